#!/usr/bin/env bash
# `make dev`: a dev Vault with the plugin registered (by sha256 and version)
# and mounted at manus/, configured against a local Manus stand-in. Runs in
# the foreground; Ctrl-C stops everything.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

VAULT_PORT=${VAULT_PORT:-8200}
STANDIN_PORT=${STANDIN_PORT:-8399}
dev_dir="$root/.dev"
plugin_dir="$dev_dir/plugins"
plugin_name=vault-plugin-secrets-manus
version="v$(tr -d '[:space:]' < VERSION)"
client_id=tm_dev_standin_client
client_secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

vault_bin=$(scripts/ensure-vault.sh)
rm -rf "$dev_dir"
mkdir -p "$plugin_dir"

echo "==> building $plugin_name $version"
CGO_ENABLED=0 go build -trimpath \
	-ldflags "-X github.com/manus-community/vault-plugin-secrets-manus.Version=$version" \
	-o "$plugin_dir/$plugin_name" ./cmd/$plugin_name
go build -o "$dev_dir/manus-standin" ./cmd/manus-standin

pids=()
cleanup() {
	trap - INT TERM EXIT
	echo
	echo "==> stopping"
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

echo "==> starting the Manus stand-in on 127.0.0.1:$STANDIN_PORT"
MANUS_STANDIN_CLIENT_SECRET=$client_secret "$dev_dir/manus-standin" \
	-listen "127.0.0.1:$STANDIN_PORT" -client-id "$client_id" &
pids+=($!)

echo "==> starting vault server -dev on 127.0.0.1:$VAULT_PORT (log: .dev/vault.log)"
printf 'plugin_directory = "%s"\n' "$plugin_dir" > "$dev_dir/vault.hcl"
"$vault_bin" server -dev -dev-root-token-id=root -dev-no-store-token \
	-dev-listen-address="127.0.0.1:$VAULT_PORT" -config="$dev_dir/vault.hcl" \
	> "$dev_dir/vault.log" 2>&1 &
pids+=($!)

export VAULT_ADDR="http://127.0.0.1:$VAULT_PORT" VAULT_TOKEN=root
for _ in $(seq 1 100); do
	curl -fsS "$VAULT_ADDR/v1/sys/health" >/dev/null 2>&1 && break
	kill -0 "${pids[1]}" 2>/dev/null || { cat "$dev_dir/vault.log"; exit 1; }
	sleep 0.2
done

if command -v sha256sum >/dev/null; then
	sha=$(sha256sum "$plugin_dir/$plugin_name" | cut -d' ' -f1)
else
	sha=$(shasum -a 256 "$plugin_dir/$plugin_name" | cut -d' ' -f1)
fi
"$vault_bin" plugin register -sha256="$sha" -version="$version" secret "$plugin_name"
"$vault_bin" secrets enable -path=manus "$plugin_name"
"$vault_bin" write manus/config client_id="$client_id" client_secret="$client_secret" \
	base_url="http://127.0.0.1:$STANDIN_PORT"

cat <<EOT

==> ready: Vault at $VAULT_ADDR with $plugin_name $version mounted at manus/,
    configured against the local Manus stand-in. In another shell:

    export PATH="$(dirname "$vault_bin"):\$PATH"
    export VAULT_ADDR='$VAULT_ADDR' VAULT_TOKEN='root'
    vault read manus/token
    vault read -field=access_token manus/token
    vault read manus/config
    vault path-help manus/token

    To use the real Manus API instead of the stand-in:
    vault write manus/config base_url=https://api.manus.im client_id=tm_... client_secret=...

    Ctrl-C here stops Vault and the stand-in.
EOT
wait -n "${pids[@]}"
