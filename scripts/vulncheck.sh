#!/usr/bin/env bash
# The vulnerability check of `make test`: govulncheck over every package of
# the module, with the pinned Go toolchain (so the standard library checked
# is the one the release links), against the database DB_URL names
# (`make vulncheck` passes the pinned one it built offline, or VULN_DB).
# It fails on any known vulnerability in code the packages call
# (govulncheck's exit status 3); vulnerabilities only in modules or
# packages the code never calls are counted in its summary, not failed on.
#
#   scripts/vulncheck.sh GOVULNCHECK DB_URL
#
# Then the canary: in a copy of the module with google.golang.org/grpc pinned
# back to v1.79.3 (the version the plugin linked before issue 28), the same
# check of the plugin binary's package must fail and name that version's
# three advisories. A database that lost its entries, a govulncheck that no
# longer finds the call paths, or a flag that quietly stops the check would
# all pass the first scan; the canary catches them.
set -euo pipefail

govulncheck=${1:?usage: scripts/vulncheck.sh GOVULNCHECK DB_URL}
db=${2:?usage: scripts/vulncheck.sh GOVULNCHECK DB_URL}
go=${GO:-go}
canary_module=google.golang.org/grpc
canary_version=v1.79.3
canary_ids=(GO-2026-6443 GO-2026-6348 GO-2026-6061)

fail() { echo "vulncheck: $*" >&2; exit 1; }

echo "vulncheck: govulncheck $("$govulncheck" -version 2>/dev/null | sed -n 's/^Scanner: govulncheck@//p'), $("$go" env GOVERSION), database $db"
status=0
"$govulncheck" -db "$db" ./... || status=$?
case $status in
0) ;;
3) fail "known vulnerabilities in code this module calls (above): update the module to its 'Fixed in' version, or the Go toolchain (go.mod's toolchain line); see CONTRIBUTING.md" ;;
*) fail "govulncheck could not run (exit status $status)" ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The module's Go files as they are in the work tree, with go.mod and go.sum.
git ls-files -z --cached --others --exclude-standard -- '*.go' go.mod go.sum |
	while IFS= read -r -d '' f; do
		[ -e "$f" ] || continue
		mkdir -p "$tmp/src/$(dirname "$f")"
		cp "$f" "$tmp/src/$f"
	done
(cd "$tmp/src" && "$go" get "$canary_module@$canary_version" >/dev/null 2>&1) ||
	fail "canary: could not pin $canary_module back to $canary_version in a copy of the module"
selected=$(cd "$tmp/src" && "$go" list -m -f '{{.Version}}' "$canary_module")
[ "$selected" = "$canary_version" ] || fail "canary: the copy selects $canary_module $selected, not $canary_version"
status=0
(cd "$tmp/src" && "$govulncheck" -db "$db" ./cmd/vault-plugin-secrets-manus) >"$tmp/canary.txt" 2>&1 || status=$?
if [ "$status" -ne 3 ]; then
	cat "$tmp/canary.txt" >&2
	fail "canary: with $canary_module $canary_version govulncheck exited $status, not 3 (vulnerabilities found): the check above cannot be trusted"
fi
for id in "${canary_ids[@]}"; do
	grep -q "^Vulnerability #[0-9]*: $id\$" "$tmp/canary.txt" || {
		cat "$tmp/canary.txt" >&2
		fail "canary: with $canary_module $canary_version govulncheck does not report $id"
	}
done
echo "vulncheck: no known vulnerability in code this module calls; the canary ($canary_module pinned back to $canary_version) is refused with ${canary_ids[*]}"
