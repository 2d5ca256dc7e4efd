#!/usr/bin/env bash
# Checks the signature of a release in DIST against PUBLIC_KEY, then shows
# that the verification users run (scripts/verify-release.sh) refuses what
# it must, each for its own reason:
#   - an unsigned SHA256SUMS (no SHA256SUMS.sig);
#   - a SHA256SUMS changed after signing (one checksum replaced, as whoever
#     swaps a binary would have to), with the original signature;
#   - SHA256SUMS signed by another key (made here, for this check).
#
#   scripts/check-signature.sh DIST PUBLIC_KEY
set -euo pipefail

dist=${1:?usage: scripts/check-signature.sh DIST PUBLIC_KEY}
public_key=${2:?usage: scripts/check-signature.sh DIST PUBLIC_KEY}
verify=$(dirname "$0")/verify-release.sh

fail() { echo "check-signature: $*" >&2; exit 1; }

"$verify" "$dist" "$public_key" || fail "the release does not verify against $public_key"

tmp=$(mktemp -d)
other_home=$tmp/other-gnupg
cleanup() {
	GNUPGHOME="$other_home" gpgconf --kill all 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# refused CASE DIR REASON: verify-release.sh must fail on DIR, saying REASON.
refused() {
	local status=0
	"$verify" "$2" "$public_key" >"$tmp/out" 2>&1 || status=$?
	[ "$status" -ne 0 ] || { cat "$tmp/out" >&2; fail "$1: accepted"; }
	grep -qF -- "$3" "$tmp/out" || { cat "$tmp/out" >&2; fail "$1: refused, but not because $3"; }
	echo "check-signature: $1: refused ($3)"
}

# Each case gets its own folder holding the release files (links to them)
# and its own SHA256SUMS and SHA256SUMS.sig.
case_dir() {
	mkdir "$tmp/$1"
	local f
	for f in "$dist"/*; do
		case $(basename "$f") in SHA256SUMS | SHA256SUMS.sig) ;; *) ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$tmp/$1/" ;; esac
	done
	echo "$tmp/$1"
}

d=$(case_dir unsigned)
cp "$dist/SHA256SUMS" "$d/"
refused "unsigned SHA256SUMS" "$d" "SHA256SUMS is not signed"

d=$(case_dir tampered)
cp "$dist/SHA256SUMS.sig" "$d/"
first=$(head -n1 "$dist/SHA256SUMS")
sed "1s/^[0-9a-f]*/$(printf '%s' "$first" | sha256sum | cut -d' ' -f1)/" "$dist/SHA256SUMS" >"$d/SHA256SUMS"
! cmp -s "$dist/SHA256SUMS" "$d/SHA256SUMS" || fail "the tampered SHA256SUMS is unchanged"
refused "SHA256SUMS changed after signing" "$d" "BAD signature"

d=$(case_dir other-key)
cp "$dist/SHA256SUMS" "$d/"
mkdir -m 700 "$other_home"
GNUPGHOME=$other_home gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
	--quick-gen-key "someone else <other@invalid>" ed25519 sign 1d 2>/dev/null
GNUPGHOME=$other_home gpg --batch --quiet --detach-sign --output "$d/SHA256SUMS.sig" "$d/SHA256SUMS"
refused "SHA256SUMS signed by another key" "$d" "not a signature by the release key"

echo "check-signature: SHA256SUMS.sig verifies against $public_key; unsigned, changed and wrongly signed SHA256SUMS are refused"
