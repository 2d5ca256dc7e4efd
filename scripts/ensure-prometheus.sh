#!/usr/bin/env bash
# Finds the Prometheus server and promtool the metrics tests use, building
# them from the Go module proxy the first time. Prints the prometheus binary's
# path on stdout (promtool is beside it); progress goes to stderr.
#
# Order: $PROMETHEUS_BIN (with promtool beside it), then a cached build of
# PROMETHEUS_MODULE_VERSION under PROMETHEUS_CACHE_DIR (outside the repo, so
# a fresh clone reuses it), built on first use.
#
# Prometheus 3.x is published to the module proxy as v0.3xx.y: v0.316.0 is
# Prometheus 3.16.0. The module zip has no web UI assets; the server serves
# its HTTP API without them (the UI pages answer with an error), which is all the tests
# use. It is built with remove_all_sd, keeping only the file and HTTP service
# discovery, which roughly halves the build.
set -euo pipefail

# Built with the machine's own Go, like Vault (scripts/ensure-vault.sh says
# why): a test fixture, cached by version alone.
export GOTOOLCHAIN=local

PROMETHEUS_MODULE_VERSION=${PROMETHEUS_MODULE_VERSION:-v0.316.0}
PROMETHEUS_CACHE_DIR=${PROMETHEUS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-manus}
dir="$PROMETHEUS_CACHE_DIR/prometheus-$PROMETHEUS_MODULE_VERSION"
cached_bin="$dir/prometheus"

log() { printf 'ensure-prometheus: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/lib-module-build.sh
source "$(dirname "$0")/lib-module-build.sh"

# works succeeds when both binaries beside $1 run.
works() {
	"$1" --version >/dev/null 2>&1 && "$(dirname "$1")/promtool" --version >/dev/null 2>&1
}

if [ -n "${PROMETHEUS_BIN:-}" ]; then
	works "$PROMETHEUS_BIN" || die "PROMETHEUS_BIN=$PROMETHEUS_BIN does not run, or has no runnable promtool beside it"
	echo "$PROMETHEUS_BIN"
	exit 0
fi

if [ -x "$cached_bin" ] && works "$cached_bin"; then
	echo "$cached_bin"
	exit 0
fi

command -v go >/dev/null || die "no Go toolchain to build Prometheus with; set PROMETHEUS_BIN to a prometheus binary with promtool beside it"

# One build at a time per cache folder; a separate lock from Vault's build.
lock_build_cache "$PROMETHEUS_CACHE_DIR" .prometheus-build.lock
if [ -x "$cached_bin" ] && works "$cached_bin"; then
	echo "$cached_bin"
	exit 0
fi

log "building Prometheus $PROMETHEUS_MODULE_VERSION (server and promtool) from the Go module proxy"
log "this takes about 7 minutes on 2 idle cores (12 CPU-minutes) the first time; the binaries are cached in $dir"

src="$PROMETHEUS_CACHE_DIR/src-prometheus-$PROMETHEUS_MODULE_VERSION"
copy_module_source "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" "$src"
release=$(tr -d '[:space:]' <"$src/VERSION")
# The workspace file names folders the module zip does not carry.
rm -f "$src/go.work" "$src/go.work.sum"

mkdir -p "$dir"
build_prometheus() {
	local cmd ldflags="-s -w -X github.com/prometheus/common/version.Version=$release"
	for cmd in prometheus promtool; do
		log "go build ./cmd/$cmd"
		GOWORK=off CGO_ENABLED=0 go build -mod=mod -trimpath -tags remove_all_sd \
			-ldflags="$ldflags" -o "$dir/$cmd.tmp" "./cmd/$cmd" || return 1
	done
}
build_in "$src" "Prometheus $PROMETHEUS_MODULE_VERSION" build_prometheus
mv "$dir/promtool.tmp" "$dir/promtool"
mv "$dir/prometheus.tmp" "$cached_bin"
rm -rf "$src"

works "$cached_bin" || die "the Prometheus binaries built in $dir do not run"
log "built $("$cached_bin" --version 2>&1 | head -n1) at $cached_bin"
echo "$cached_bin"
