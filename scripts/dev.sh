#!/usr/bin/env bash
# `make dev`: a dev Vault with the plugin registered (by sha256 and version)
# and mounted at manus/, configured against a local Manus stand-in. Runs in
# the foreground; Ctrl-C stops everything. It refuses to start if one of
# its ports is taken (VAULT_PORT, VAULT_PORT+1, STANDIN_PORT move them): it
# never registers the plugin in a Vault it did not start. DEV_DIR (default
# .dev) holds the binaries and logs.
set -euo pipefail

cd "$(dirname "$0")/.."
VAULT_PORT=${VAULT_PORT:-8200}
STANDIN_PORT=${STANDIN_PORT:-8399}
work_dir=${DEV_DIR:-$PWD/.dev}
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

will_listen_vault "$VAULT_PORT" VAULT_PORT
will_listen "$STANDIN_PORT" "Manus stand-in" STANDIN_PORT
claim_ports

client_id=tm_dev_standin_client
client_secret=$(random_secret)
vault_bin=$(scripts/ensure-vault.sh)
claim_work_dir
build_binaries
trap stop_all INT TERM EXIT
start_standin "$client_id" "$client_secret"
start_dev_vault

register_plugin
mount_manus "$client_id" "$client_secret"

cat <<EOT

==> ready: Vault at $VAULT_ADDR with $plugin_name $plugin_version mounted at manus/,
    configured against the local Manus stand-in at http://127.0.0.1:$STANDIN_PORT.
    In another shell:

    export PATH="$(dirname "$vault_bin"):\$PATH"
    export VAULT_ADDR='$VAULT_ADDR' VAULT_TOKEN='root'
    vault read manus/token
    vault read -field=access_token manus/token
    vault read manus/status probe=true
    vault path-help manus/token

    To use the real Manus API instead of the stand-in:
    vault write manus/config base_url=https://api.manus.im client_id=tm_... client_secret=...

    Ctrl-C here stops Vault and the stand-in.
EOT
wait -n "${pids[@]}"
