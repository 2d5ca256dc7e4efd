#!/usr/bin/env bash
# Proves the release in DIST is reproducible: builds it again with
# `make release` in a fresh clone of this repository, later and in another
# time zone, and requires every file of the two dist/ folders to be
# byte-identical: binaries, SBOMs, image archive and its digests, license
# list, SHA256SUMS and release notes. Only SHA256SUMS.sig is left out: a
# signature is made once, by the maintainer, and verified, never rebuilt.
# The rebuild is unsigned and must say so.
#
#   scripts/check-reproducible.sh DIST
#
# The clone is checked out at this HEAD and given the work tree's
# uncommitted changes and untracked files (if any), so it builds exactly
# what DIST was built from, and names the same commit. Each `make release`
# derives the SBOM serial numbers from the binaries and the image's times
# from the commit; nothing may come from the clock, the folder or the
# machine. (A user's rebuild of a tag: docs/releases.md.)
set -euo pipefail

dist=${1:?usage: scripts/check-reproducible.sh DIST}
fail() { echo "check-reproducible: $*" >&2; exit 1; }

top=$(git rev-parse --show-toplevel 2>/dev/null) || fail "not in a git clone: nothing to clone"
head=$(git rev-parse HEAD)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
clone=$tmp/vault-plugin-secrets-manus
git clone -q --no-checkout "$top" "$clone"
git -C "$clone" checkout -q --detach "$head"
# The work tree's state on top of HEAD: changed (staged or not), new and
# deleted files.
(cd "$top" && git diff -z --name-only HEAD && git ls-files -z --others --exclude-standard) |
	while IFS= read -r -d '' f; do
		if [ -e "$top/$f" ]; then
			mkdir -p "$clone/$(dirname "$f")"
			cp -p "$top/$f" "$clone/$f"
		else
			rm -f "$clone/$f"
		fi
	done

first_built=$(stat -c %Y "$dist/SHA256SUMS")
echo "check-reproducible: building the release again in $clone"
# A make of its own: nothing of this run's make, signing key or
# SOURCE_DATE_EPOCH passes on; the clone finds all of it from its files.
status=0
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u SOURCE_DATE_EPOCH -u RELEASE_SIGNING_KEY -u RELEASE_PUBLIC_KEY \
	-u GNUPGHOME TZ=Pacific/Kiritimati "${MAKE:-make}" -C "$clone" --no-print-directory release >"$tmp/release.log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
	cat "$tmp/release.log" >&2
	fail "make release failed in the clone"
fi
grep -q "NOT SIGNED: RELEASE_SIGNING_KEY is not set" "$tmp/release.log" ||
	{ cat "$tmp/release.log" >&2; fail "make release without a key did not say the release is not signed"; }
[ ! -e "$clone/dist/SHA256SUMS.sig" ] || fail "make release without a key wrote SHA256SUMS.sig"

list() { (cd "$1" && find . -type f ! -name SHA256SUMS.sig | LC_ALL=C sort); }
if ! diff <(list "$dist") <(list "$clone/dist") >"$tmp/files.diff"; then
	cat "$tmp/files.diff" >&2
	fail "the two releases hold different files (< $dist, > the clone's)"
fi
differ=()
while IFS= read -r f; do
	cmp -s "$dist/$f" "$clone/dist/$f" || differ+=("$f")
done < <(list "$dist")
if [ ${#differ[@]} -gt 0 ]; then
	for f in "${differ[@]}"; do
		case $f in
		*.json | *.md | *.digests | */SHA256SUMS) diff "$dist/$f" "$clone/dist/$f" | head -n 20 >&2 || true ;;
		esac
	done
	fail "not reproducible: ${differ[*]} differ between $dist and a rebuild in a fresh clone"
fi
count=$(list "$dist" | wc -l)
echo "check-reproducible: a rebuild in a fresh clone, $(($(date +%s) - first_built)) s later in another time zone, gives the same $count files, byte for byte (SHA256SUMS $(sha256sum <"$dist/SHA256SUMS" | cut -c1-16)...)"
