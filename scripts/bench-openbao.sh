#!/usr/bin/env bash
# `make bench-openbao`: token reads through a 3-node OpenBao Raft cluster
# whose standbys serve reads themselves (OpenBao 2.5 or newer, the server in
# BAO_BIN; nothing is downloaded or built). Starts the cluster, the Manus
# stand-in and the plugin, mounted twice: manus/ (leased_reads=true, the
# default) and manus-nl/ (leased_reads=false). Then cmd/manus-loadtest, in
# one run and round by round, reads:
#   standby:manus-nl/token  non-leased token reads sent to a standby
#   active:manus-nl/token   non-leased token reads sent to the active node
#   standby:manus/token     leased token reads sent to a standby (the lease
#                           can only be written on the active node)
#   active:manus/token      leased token reads sent to the active node
# and reports reads/s, latency, failed reads (with the first failure of each
# path) and the mints the stand-in saw during each path's measured runs, the
# leases held afterwards and the peak RSS of the servers and the plugin.
#
# CONCURRENCY, DURATION, REPEAT tune the run; BASE_PORT (nodes on it, +10
# and +20, each with its cluster port one above) and STANDIN_PORT the ports,
# which must be free; results land in .dev/bench-openbao/.
set -euo pipefail

cd "$(dirname "$0")/.."
[ -n "${BAO_BIN:-}" ] || {
	echo "bench-openbao: BAO_BIN is not set: set it to an OpenBao 2.5 or newer server binary (BAO_BIN=/path/to/bao make bench-openbao)" >&2
	exit 2
}
[ -f "$BAO_BIN" ] && [ -x "$BAO_BIN" ] || { echo "bench-openbao: BAO_BIN=$BAO_BIN is not an executable file" >&2; exit 2; }
BASE_PORT=${BASE_PORT:-18300}
STANDIN_PORT=${STANDIN_PORT:-18499}
CONCURRENCY=${CONCURRENCY:-16}
DURATION=${DURATION:-15s}
REPEAT=${REPEAT:-3}
work_dir="$PWD/.dev/bench-openbao"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

will_listen_raft_cluster 3 "$BASE_PORT" BASE_PORT
will_listen "$STANDIN_PORT" "Manus stand-in" STANDIN_PORT
claim_ports

vault_bin=$BAO_BIN
# Standby reads are OpenBao's default on Raft since 2.5; stated so the
# benchmark does not depend on it.
server_extra_config='disable_standby_reads = false'
client_id=tm_bench_client
client_secret=$(random_secret)
claim_work_dir
build_binaries
go build -o "$work_dir/manus-loadtest" ./cmd/manus-loadtest
trap stop_all INT TERM EXIT
start_standin "$client_id" "$client_secret" > "$work_dir/standin.log"
start_raft_cluster 3 "$BASE_PORT"
active=${node_addrs[0]} standby=${node_addrs[1]}

register_plugin
mount_manus "$client_id" "$client_secret"
"$vault_bin" secrets enable -path=manus-nl "$plugin_name"
"$vault_bin" write manus-nl/config client_id="$client_id" client_secret="$client_secret" \
	base_url="http://127.0.0.1:$STANDIN_PORT" leased_reads=false
# The mounts and their config reach the standby through Raft a moment later.
for _ in $(seq 1 100); do
	VAULT_ADDR=$standby "$vault_bin" read -field=client_id manus-nl/config >/dev/null 2>&1 && break
	sleep 0.2
done
health_is "$active" 200 ||
	{ echo "bench-openbao: $active is no longer the active node" >&2; exit 1; }

echo "==> load test on a 3-node OpenBao Raft cluster: concurrency $CONCURRENCY, $DURATION per path, $REPEAT rounds"
echo "    active node $active, standby $standby"
"$work_dir/manus-loadtest" \
	-node active="$active" -node standby="$standby" \
	-path standby:manus-nl/token -path active:manus-nl/token \
	-path standby:manus/token -path active:manus/token \
	-standin "http://127.0.0.1:$STANDIN_PORT" \
	-lease-prefix manus/token/ -lease-prefix manus-nl/token/ \
	-vault "$BAO_BIN" -plugin-path "$work_dir/plugins/$plugin_name" \
	-concurrency "$CONCURRENCY" -duration "$DURATION" -repeat "$REPEAT" \
	| tee "$work_dir/results.txt"
echo "==> results in $work_dir/results.txt"
