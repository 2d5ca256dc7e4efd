#!/usr/bin/env bash
# `make bench-vault`: reads through a real Vault. Starts a single-node Vault
# on Raft integrated storage, as production runs it (STORAGE=dev for the
# in-memory dev server instead), with the plugin and the Manus stand-in, and
# runs cmd/manus-loadtest, in one run and round by round, against:
#   manus/token        leased token reads (leased_reads=true, the default)
#   manus-nl/token     non-leased token reads (leased_reads=false)
#   secret/data/bench  a KV v2 read on the built-in engine
#   manus/config       a plugin read of its storage, without a lease
# It reports reads/s, latency, the mints the stand-in saw, the ratios of
# leased token reads to each of the others, the leases Vault holds
# afterwards under each token mount, and the peak RSS of Vault and of the
# plugin; it also times a cold mount.
# PROFILE=1 captures CPU profiles of Vault and of the plugin during a
# leased token run. COMPARE_REF=<git ref> also builds the plugin as it was
# at that ref, mounts it at manus-ref/ (leased reads, its only mode then)
# and measures manus-ref/token in the same rounds, side by side.
#
# CONCURRENCY, DURATION, REPEAT tune the run; results land in .dev/bench/.
# It listens on VAULT_PORT and VAULT_PORT+1 (Vault), STANDIN_PORT (the
# stand-in) and PPROF_PORT (the plugin's pprof listener), and refuses to
# start if one is taken.
set -euo pipefail

cd "$(dirname "$0")/.."
VAULT_PORT=${VAULT_PORT:-18200}
STANDIN_PORT=${STANDIN_PORT:-18399}
CONCURRENCY=${CONCURRENCY:-16}
DURATION=${DURATION:-15s}
REPEAT=${REPEAT:-3}
PROFILE=${PROFILE:-0}
STORAGE=${STORAGE:-raft}
COMPARE_REF=${COMPARE_REF:-}
PPROF_PORT=${PPROF_PORT:-18611}
pprof_addr=127.0.0.1:$PPROF_PORT
work_dir="$PWD/.dev/bench"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

will_listen_vault "$VAULT_PORT" VAULT_PORT
will_listen "$STANDIN_PORT" "Manus stand-in" STANDIN_PORT
will_listen "$PPROF_PORT" "the plugin's pprof listener" PPROF_PORT
claim_ports

client_id=tm_bench_client
client_secret=$(random_secret)
vault_bin=$(scripts/ensure-vault.sh)
claim_work_dir
build_binaries
go build -o "$work_dir/manus-loadtest" ./cmd/manus-loadtest
paths=(-path manus/token -path manus-nl/token)
if [ -n "$COMPARE_REF" ]; then
	echo "==> building the plugin at $COMPARE_REF for comparison"
	git worktree add --detach -f "$work_dir/ref-src" "$COMPARE_REF" >/dev/null
	build_plugin="$PWD/scripts/build-plugin.sh"
	(cd "$work_dir/ref-src" && "$build_plugin" "$work_dir/plugins/$plugin_name-ref" "$plugin_version")
	git worktree remove --force "$work_dir/ref-src"
	paths+=(-path manus-ref/token)
fi
paths+=(-path secret/data/bench -path manus/config)
trap stop_all INT TERM EXIT
start_standin "$client_id" "$client_secret" > "$work_dir/standin.log"
case "$STORAGE" in
raft) start_raft_vault ;;
dev) start_dev_vault ;;
*) echo "STORAGE must be raft or dev, not $STORAGE" >&2; exit 2 ;;
esac

register_plugin -env="MANUS_PLUGIN_PPROF_ADDR=$pprof_addr"
mount_manus "$client_id" "$client_secret"
"$vault_bin" secrets enable -path=manus-nl "$plugin_name"
"$vault_bin" write manus-nl/config client_id="$client_id" client_secret="$client_secret" \
	base_url="http://127.0.0.1:$STANDIN_PORT" leased_reads=false
"$vault_bin" kv put -mount=secret bench value=0123456789abcdef0123456789abcdef >/dev/null
if [ -n "$COMPARE_REF" ]; then
	"$vault_bin" plugin register -sha256="$(sha256_of "$work_dir/plugins/$plugin_name-ref")" \
		-version="$plugin_version" -command="$plugin_name-ref" secret "$plugin_name-ref"
	"$vault_bin" secrets enable -path=manus-ref "$plugin_name-ref"
	"$vault_bin" write manus-ref/config client_id="$client_id" client_secret="$client_secret" \
		base_url="http://127.0.0.1:$STANDIN_PORT"
fi

if [ "$PROFILE" = 1 ]; then
	echo "==> profiling a 20s manus/token run (Vault and plugin)"
	# The plugin ignores a pprof port it cannot bind: profile only its own.
	plugin_pid=$(pgrep -f "^$work_dir/plugins/$plugin_name\$" | head -n1) || true
	if [ -z "$plugin_pid" ] || ! listens_on "$plugin_pid" "$PPROF_PORT"; then
		die "the plugin process does not listen on $pprof_addr (taken since the start?)"
	fi
	"$work_dir/manus-loadtest" -path manus/token -concurrency "$CONCURRENCY" -duration 25s -repeat 1 -warmup 0s > /dev/null 2>&1 &
	load_pid=$!
	sleep 3
	curl --noproxy '*' -fsS -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/sys/pprof/profile?seconds=20" -o "$work_dir/vault.cpu.pprof" &
	vault_profile_pid=$!
	curl --noproxy '*' -fsS "http://$pprof_addr/debug/pprof/profile?seconds=20" -o "$work_dir/plugin.cpu.pprof"
	wait "$vault_profile_pid" "$load_pid" || true
	go tool pprof -top -nodecount=25 "$work_dir/vault.cpu.pprof" > "$work_dir/vault.cpu.txt" 2>/dev/null || true
	go tool pprof -top -nodecount=25 "$work_dir/plugin.cpu.pprof" > "$work_dir/plugin.cpu.txt" 2>/dev/null || true
	echo "    profiles: $work_dir/{vault,plugin}.cpu.{pprof,txt}"
fi

echo "==> load test on $STORAGE storage: concurrency $CONCURRENCY, $DURATION per path, $REPEAT rounds"
"$work_dir/manus-loadtest" \
	"${paths[@]}" \
	-vault "$vault_bin" -plugin-path "$work_dir/plugins/$plugin_name" \
	-lease-prefix manus/token/ -lease-prefix manus-nl/token/ \
	-standin "http://127.0.0.1:$STANDIN_PORT" \
	-concurrency "$CONCURRENCY" -duration "$DURATION" -repeat "$REPEAT" \
	-cold-mount manus-cold \
	-cold-config "{\"client_id\":\"$client_id\",\"client_secret\":\"$client_secret\",\"base_url\":\"http://127.0.0.1:$STANDIN_PORT\",\"verify_credentials\":false}" \
	| tee "$work_dir/results.txt"
echo "==> results in $work_dir/results.txt"
