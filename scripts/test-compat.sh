#!/usr/bin/env bash
# Runs the whole end-to-end suite against each Vault version given as an
# argument (e.g. `scripts/test-compat.sh 1.16.3 1.19.0 1.21.0`), one after
# the other. Each Vault is found or built by scripts/ensure-vault.sh into its
# own cache folder (built once, 10 to 15 minutes on two cores).
#
# Every version is tried even when an earlier one fails; the summary at the
# end has one line per version in the order of the compatibility table in
# docs/upgrading.md (version, result, date, plugin version), and the exit
# status is non-zero if any version failed to build or pass.
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: $0 VERSION..." >&2; exit 2; }

plugin_version="v$(tr -d '[:space:]' < VERSION)"
go=${GO:-go}
log() { printf '==> test-compat: %s\n' "$*" >&2; }

results=()
failed=0
n=0
for version in "$@"; do
	n=$((n + 1))
	log "[$n/$#] Vault $version: finding or building it"
	# VAULT_BIN from the caller's environment would pin another version.
	if ! bin=$(env -u VAULT_BIN VAULT_BUILD_VERSION="$version" scripts/ensure-vault.sh); then
		results+=("$version | build failed")
		failed=1
		continue
	fi
	log "[$n/$#] Vault $version: end-to-end suite against $bin"
	start=$SECONDS
	if VAULT_BIN="$bin" "$go" test -race -tags e2e -count=1 -timeout 30m ./e2e/; then
		result=passed
	else
		result=FAILED
		failed=1
	fi
	log "[$n/$#] Vault $version: $result in $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s"
	results+=("$version | $result | $(date -u +%Y-%m-%d) | $plugin_version")
done

log "summary (Vault version | result | date | plugin version):"
printf '  %s\n' "${results[@]}" >&2
exit "$failed"
