#!/usr/bin/env bash
# `make pincheck`: the pins that live in one place are obeyed and quoted
# right everywhere else.
#   - go.mod's toolchain line is the Go toolchain pin. The go command that
#     make runs must be that version (the Makefile exports GOTOOLCHAIN from
#     it; a machine running with GOTOOLCHAIN=local would otherwise ignore it
#     and build with its own Go), and every GOTOOLCHAIN=go... the docs tell
#     users to export must name it.
#   - If the maintainers' release key is published (release-key.asc),
#     SECURITY.md must state its fingerprint, which users compare.
set -euo pipefail

go=${GO:-go}
fail() { echo "pincheck: $*" >&2; exit 1; }

want=$(sed -n 's/^toolchain[[:space:]]*//p' go.mod)
[ -n "$want" ] || fail "go.mod has no toolchain line (the pinned Go toolchain)"
got=$("$go" env GOVERSION)
[ "$got" = "$want" ] || fail "make runs $got, not $want from go.mod's toolchain line (GOTOOLCHAIN=${GOTOOLCHAIN:-unset}; the Makefile exports it)"

stale=$(grep -rnoE --include='*.md' 'GOTOOLCHAIN=go[0-9][0-9a-z.]*' README.md CONTRIBUTING.md SECURITY.md docs |
	grep -v ":GOTOOLCHAIN=$want\$" || true)
[ -z "$stale" ] || fail "docs name another toolchain than go.mod's $want:"$'\n'"$stale"
mentions=$(grep -lF "GOTOOLCHAIN=$want" README.md CONTRIBUTING.md | wc -l || true)
[ "$mentions" -eq 2 ] || fail "README.md and CONTRIBUTING.md must both tell users to export GOTOOLCHAIN=$want"

key=release-key.asc
if [ -f "$key" ]; then
	"$(dirname "$0")/ensure-gpg.sh"
	home=$(mktemp -d)
	trap 'rm -rf "$home"' EXIT
	fprs=$(GNUPGHOME=$home gpg --batch --with-colons --show-keys "$key" | awk -F: '$1 == "fpr" { print $10 }')
	[ -n "$fprs" ] || fail "$key holds no OpenPGP key"
	flat=$(tr -d ' ' <SECURITY.md)
	primary=$(head -n1 <<<"$fprs")
	grep -qF "$primary" <<<"$flat" || fail "SECURITY.md does not state the fingerprint of $key, $primary"
	echo "pincheck: Go toolchain $want; release key $primary, stated in SECURITY.md"
else
	echo "pincheck: Go toolchain $want, as go.mod pins and the docs say; no release key published yet ($key)"
fi
