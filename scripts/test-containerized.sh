#!/usr/bin/env bash
# make test-containerized: the release image as a Vault containerized
# plugin under Docker and gVisor runsc, and as the Helm chart's init
# container and OpenBao would use it (e2e/containerized_test.go).
#
# Needs root: it installs Debian's docker.io, runsc, iptables and skopeo if
# they are missing, and starts dockerd (with the runsc runtime) if none is
# running; the dockerd it starts must be the one answering on its socket.
# It stops what it started, by process ID: the dockerd it started (which
# stops its containerd and containers), and any container shim or runsc
# process that appeared while that dockerd ran. Run `make release` first
# (the make target does).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

fail() { echo "test-containerized: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (it installs packages and runs dockerd)"
[ -f "dist/SHA256SUMS" ] || fail "no release in dist/: run make release"

packages=()
command -v dockerd >/dev/null || packages+=(docker.io)
command -v runsc >/dev/null || packages+=(runsc)
command -v iptables >/dev/null || packages+=(iptables)
command -v skopeo >/dev/null || packages+=(skopeo)
if [ ${#packages[@]} -gt 0 ]; then
	echo "==> installing ${packages[*]} from Debian's packages"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

work=$(mktemp -d)
# Processes of container runtimes running before the test: anything of
# theirs that appears later was started by this run.
runtime_pids() { pgrep -f 'containerd-shim|runsc' 2>/dev/null | sort || true; }
runtime_pids > "$work/before"
dockerd_pid=

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [ -n "$dockerd_pid" ]; then
		stop_started_dockerd
	fi
	rm -rf "$work"
	exit "$status"
}

# stop_started_dockerd stops the dockerd this run started, then ends what is
# left of the container shims and sandboxes that appeared while it ran,
# after giving them a moment to exit. (With a dockerd that was already
# running, the test removes its own containers, and new shims may be
# anyone's.)
stop_started_dockerd() {
	echo "==> stopping the dockerd this run started (pid $dockerd_pid)"
	kill "$dockerd_pid" 2>/dev/null || true
	for _ in $(seq 1 150); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
	kill -9 "$dockerd_pid" 2>/dev/null || true
	for _ in $(seq 1 25); do
		runtime_pids > "$work/after"
		[ -z "$(comm -13 "$work/before" "$work/after")" ] && break
		sleep 0.2
	done
	for pid in $(comm -13 "$work/before" "$work/after"); do
		[ -e "/proc/$pid" ] || continue
		echo "==> stopping leftover container runtime process $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-100)"
		kill -9 "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT INT TERM

runsc_args='"--host-uds=all", "--platform=ptrace", "--network=host"'
if docker info >/dev/null 2>&1; then
	docker info --format '{{json .Runtimes}}' | grep -q '"runsc"' ||
		fail "dockerd is running without a runsc runtime: add it to /etc/docker/daemon.json with runtimeArgs [$runsc_args] (docs/kubernetes.md) and restart dockerd"
	echo "==> using the running dockerd"
else
	# The runsc settings this kind of host needs (docs/kubernetes.md): host
	# Unix sockets for Vault, the ptrace platform (no nested KVM) and
	# host networking inside the sandbox (the container still has its own
	# network namespace).
	cat > "$work/daemon.json" <<-EOF
		{
		  "runtimes": {
		    "runsc": {
		      "path": "$(command -v runsc)",
		      "runtimeArgs": [$runsc_args]
		    }
		  }
		}
	EOF
	# The CLI, and the test's Vault through it, talk to this dockerd's
	# socket, and only once this dockerd is the process listening there.
	socket=/var/run/docker.sock
	export DOCKER_HOST=unix://$socket
	echo "==> starting dockerd with the runsc runtime on $socket (log: $work/dockerd.log)"
	dockerd --config-file "$work/daemon.json" -H "$DOCKER_HOST" > "$work/dockerd.log" 2>&1 &
	dockerd_pid=$!
	ready=0
	for _ in $(seq 1 150); do
		if docker info >/dev/null 2>&1 && listens_on "$dockerd_pid" "$socket"; then ready=1; break; fi
		kill -0 "$dockerd_pid" 2>/dev/null || { cat "$work/dockerd.log" >&2; fail "the dockerd this run started exited"; }
		sleep 0.2
	done
	[ "$ready" = 1 ] || { tail -20 "$work/dockerd.log" >&2; fail "the dockerd this run started did not come up on $socket"; }
fi

VAULT_BIN=$(scripts/ensure-vault.sh)
export VAULT_BIN
echo "==> go test -race -tags 'e2e containerized' -run TestContainerizedPlugin ./e2e/"
go test -race -tags 'e2e containerized' -count=1 -v -timeout 20m -run 'TestContainerizedPlugin' ./e2e/ 2>&1 | tee "$work/test.log"
status=${PIPESTATUS[0]}
grep -q -- '--- PASS: TestContainerizedPlugin ' "$work/test.log" || status=1
exit "$status"
