#!/usr/bin/env bash
# `make bench-vault`: reads through a real Vault. Starts a dev Vault with the
# plugin and the Manus stand-in, then runs cmd/manus-loadtest against
# manus/token and its baselines: a KV v2 secret on the built-in engine; a KV
# v1 secret on the built-in engine and on the same KV engine run as an
# external plugin (the difference is the cost of the plugin gRPC hop alone;
# the plugin is built from the Go module proxy, not committed; Vault allows
# external KV mounts only as version 1); and manus/config (a plugin read
# without a lease). It also times a cold mount. PROFILE=1
# captures CPU profiles of Vault and of the plugin during a token run.
#
# CONCURRENCY, DURATION, REPEAT tune the run; results land in .dev/bench/.
set -euo pipefail

cd "$(dirname "$0")/.."
VAULT_PORT=${VAULT_PORT:-18200}
STANDIN_PORT=${STANDIN_PORT:-18399}
CONCURRENCY=${CONCURRENCY:-16}
DURATION=${DURATION:-15s}
REPEAT=${REPEAT:-3}
PROFILE=${PROFILE:-0}
pprof_addr=127.0.0.1:18611
work_dir="$PWD/.dev/bench"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

client_id=tm_bench_client
client_secret=$(random_secret)
vault_bin=$(scripts/ensure-vault.sh)
rm -rf "$work_dir"
build_binaries
go build -o "$work_dir/manus-loadtest" ./cmd/manus-loadtest
echo "==> building the KV v2 engine as an external plugin (baseline)"
GOBIN="$work_dir/plugins" GOFLAGS=-mod=mod go install github.com/hashicorp/vault-plugin-secrets-kv/cmd/vault-plugin-secrets-kv@v0.25.0
trap stop_all INT TERM EXIT
start_standin "$client_id" "$client_secret" > "$work_dir/standin.log"
start_dev_vault

register_plugin -env="MANUS_PLUGIN_PPROF_ADDR=$pprof_addr"
mount_manus "$client_id" "$client_secret"
"$vault_bin" kv put -mount=secret bench value=0123456789abcdef0123456789abcdef >/dev/null
"$vault_bin" plugin register -sha256="$(sha256_of "$work_dir/plugins/vault-plugin-secrets-kv")" secret vault-plugin-secrets-kv
"$vault_bin" secrets enable -path=kv-ext vault-plugin-secrets-kv
"$vault_bin" secrets enable -path=kv1 -version=1 kv
"$vault_bin" write kv-ext/bench value=0123456789abcdef0123456789abcdef >/dev/null
"$vault_bin" write kv1/bench value=0123456789abcdef0123456789abcdef >/dev/null

if [ "$PROFILE" = 1 ]; then
	echo "==> profiling a 20s manus/token run (Vault and plugin)"
	"$work_dir/manus-loadtest" -path manus/token -concurrency "$CONCURRENCY" -duration 25s -repeat 1 -warmup 0s > /dev/null 2>&1 &
	load_pid=$!
	sleep 3
	curl -fsS -H "X-Vault-Token: root" "$VAULT_ADDR/v1/sys/pprof/profile?seconds=20" -o "$work_dir/vault.cpu.pprof" &
	vault_profile_pid=$!
	curl -fsS "http://$pprof_addr/debug/pprof/profile?seconds=20" -o "$work_dir/plugin.cpu.pprof"
	wait "$vault_profile_pid" "$load_pid" || true
	go tool pprof -top -nodecount=25 "$work_dir/vault.cpu.pprof" > "$work_dir/vault.cpu.txt" 2>/dev/null || true
	go tool pprof -top -nodecount=25 "$work_dir/plugin.cpu.pprof" > "$work_dir/plugin.cpu.txt" 2>/dev/null || true
	echo "    profiles: $work_dir/{vault,plugin}.cpu.{pprof,txt}"
fi

echo "==> load test: concurrency $CONCURRENCY, $DURATION per path, $REPEAT rounds"
"$work_dir/manus-loadtest" \
	-path manus/token -path secret/data/bench -path kv1/bench -path kv-ext/bench -path manus/config \
	-concurrency "$CONCURRENCY" -duration "$DURATION" -repeat "$REPEAT" \
	-cold-mount manus-cold \
	-cold-config "{\"client_id\":\"$client_id\",\"client_secret\":\"$client_secret\",\"base_url\":\"http://127.0.0.1:$STANDIN_PORT\",\"verify_credentials\":false}" \
	| tee "$work_dir/results.txt"
echo "==> results in $work_dir/results.txt"
