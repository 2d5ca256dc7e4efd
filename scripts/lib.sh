# shellcheck shell=bash disable=SC2154 # work_dir, vault_bin and the ports are the sourcing script's
# Shared by scripts/dev.sh, scripts/bench-vault.sh and
# scripts/bench-openbao.sh: build the plugin, run the Manus stand-in and a
# dev Vault, a Vault on Raft storage or a Raft cluster, with the plugin
# registered (scripts/test-containerized.sh uses listens_on for the dockerd
# it starts). Source it from the repository root after setting VAULT_PORT
# (or the cluster's ports), STANDIN_PORT, work_dir and vault_bin (the
# server binary, Vault or OpenBao).
#
# These scripts talk only to the servers they start. Before starting
# anything, claim_ports names every port a run listens on and refuses one
# that is taken (a server already there would answer in place of the one
# started, and get its plugin registration and credentials); after starting
# a server, they wait until that very process listens on its port
# (listens_on) before sending it anything.

plugin_name=vault-plugin-secrets-manus
plugin_version="v$(tr -d '[:space:]' < VERSION)"
pids=()
script_name=$(basename "$0")

# The CLI would send its requests past VAULT_ADDR with a caller's
# VAULT_AGENT_ADDR (to that Agent, and through it to another Vault) or
# proxy setting; the bao CLI prefers its BAO_* variables to VAULT_*.
unset VAULT_AGENT_ADDR VAULT_HTTP_PROXY VAULT_PROXY_ADDR \
	BAO_ADDR BAO_TOKEN BAO_NAMESPACE BAO_AGENT_ADDR BAO_HTTP_PROXY BAO_PROXY_ADDR

die() {
	echo "$script_name: $*" >&2
	exit 1
}

# listen_plan holds the ports this run will listen on, as PORT|WHAT|VARIABLE.
listen_plan=()

# will_listen PORT WHAT VARIABLE adds a port to the plan, with what listens
# there and the variable that moves it.
will_listen() {
	listen_plan+=("$1|$2|$3")
}

# will_listen_vault PORT VARIABLE [NAME] adds a server's API port and its
# cluster port, PORT+1 (where dev mode and start_raft_node put it).
will_listen_vault() {
	will_listen "$1" "${3:-Vault} API" "$2"
	will_listen "$(($1 + 1))" "${3:-Vault} cluster port, API port + 1" "$2"
}

# claim_ports prints the planned ports and refuses to go on if any of them
# is taken, naming it and its variable.
claim_ports() {
	local entry port what var taken=0
	for entry in "${listen_plan[@]}"; do
		IFS='|' read -r port what var <<<"$entry"
		if port_taken "$port"; then
			echo "$script_name: port $port on 127.0.0.1 ($what) is already in use: another server listens there, and this script talks only to the servers it starts. Stop that server, or set $var to move the port." >&2
			taken=1
		else
			echo "==> 127.0.0.1:$port: $what ($var)"
		fi
	done
	[ "$taken" = 0 ] || die "refusing to start: a port it needs is in use"
}

# port_taken PORT succeeds when something accepts connections on
# 127.0.0.1:PORT (a listener on 0.0.0.0 or [::] included).
port_taken() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# listens_on PID PORT|SOCKET succeeds when process PID itself holds a
# socket listening on TCP PORT (or on the Unix SOCKET path), so that what
# answers there is that process. Linux: the socket's inode, from /proc/net,
# among PID's file descriptors; elsewhere lsof.
listens_on() {
	local inode fds
	if [ -r /proc/net/tcp ]; then
		fds=$(readlink "/proc/$1/fd/"* 2>/dev/null) || true
		for inode in $(listening_inodes "$2"); do
			grep -qxF "socket:[$inode]" <<<"$fds" && return 0
		done
		return 1
	fi
	command -v lsof >/dev/null || die "lsof is needed to check which process listens on a port"
	case $2 in
	/*) lsof -a -p "$1" -U 2>/dev/null | grep -qF " $2" ;;
	*) lsof -nP -a -p "$1" -iTCP:"$2" -sTCP:LISTEN >/dev/null 2>&1 ;;
	esac
}

# listening_inodes PORT|SOCKET prints the inodes of the sockets listening
# on TCP PORT, or on the Unix SOCKET path (Linux).
listening_inodes() {
	case $1 in
	/*) awk -v path="$1" '$4 == "00010000" && $6 == "01" && $8 == path { print $7 }' /proc/net/unix ;;
	*) awk -v port="$(printf '%04X' "$1")" '$4 == "0A" && $2 ~ (":" port "$") { print $10 }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null ;;
	esac
}

# wait_until_ready PID PORT WHAT LOG CHECK... waits until CHECK succeeds and
# process PID (the WHAT this run started, logging to LOG, or "" for none)
# listens on PORT. If the process exits first, the port was most likely
# taken since claim_ports: whatever answers there now is not this run's.
wait_until_ready() {
	local pid=$1 port=$2 what=$3 log=$4
	shift 4
	for _ in $(seq 1 150); do
		"$@" && listens_on "$pid" "$port" && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			[ -z "$log" ] || tail -n 20 "$log" >&2
			die "the $what this run started (pid $pid) exited instead of listening on 127.0.0.1:$port; if it says 'address already in use', another server took the port: nothing was sent to it"
		fi
		sleep 0.2
	done
	die "the $what this run started (pid $pid) did not become ready on 127.0.0.1:$port${log:+; see $log}"
}

# health_is ADDR STATUS succeeds when sys/health at ADDR answers STATUS:
# 200 active, 429 standby, 501 not initialised, 503 sealed. No proxy: the
# server is on loopback.
health_is() {
	[ "$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' "$1/v1/sys/health")" = "$2" ]
}

# claim_work_dir empties $work_dir for this run, unless a run of these
# scripts that is still going uses it or a folder in it (dev.sh's .dev holds
# the benchmarks' folders): its servers run their plugin from there. A
# folder outside the repository's .dev is emptied only if a run made it.
claim_work_dir() {
	local file owner ours=0
	case $work_dir in "$PWD/.dev" | "$PWD"/.dev/*) ours=1 ;; esac
	while IFS= read -r file; do
		ours=1
		owner=$(cat "$file" 2>/dev/null) || continue
		if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null; then
			die "$(dirname "$file") belongs to another run that is still going (pid $owner): stop it first (or, if pid $owner is something else, delete $file)"
		fi
	done < <(find "$work_dir" -name run.pid 2>/dev/null)
	if [ "$ours" = 0 ] && [ -n "$(ls -A "$work_dir" 2>/dev/null)" ]; then
		die "$work_dir is not empty and no run of these scripts made it: choose a new folder"
	fi
	rm -rf "$work_dir"
	mkdir -p "$work_dir"
	echo "$$" > "$work_dir/run.pid"
}

# build_binaries builds the plugin (version stamped) into $work_dir/plugins
# and the stand-in into $work_dir.
build_binaries() {
	echo "==> building $plugin_name $plugin_version"
	mkdir -p "$work_dir/plugins"
	scripts/build-plugin.sh "$work_dir/plugins/$plugin_name" "$plugin_version"
	go build -o "$work_dir/manus-standin" ./cmd/manus-standin
}

stop_all() {
	trap - INT TERM EXIT
	echo
	echo "==> stopping"
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}

# start_standin CLIENT_ID CLIENT_SECRET [extra flags]
start_standin() {
	local id=$1 secret=$2
	shift 2
	echo "==> starting the Manus stand-in on 127.0.0.1:$STANDIN_PORT"
	MANUS_STANDIN_CLIENT_SECRET=$secret "$work_dir/manus-standin" \
		-listen "127.0.0.1:$STANDIN_PORT" -client-id "$id" "$@" &
	local standin_pid=$!
	pids+=("$standin_pid")
	wait_until_ready "$standin_pid" "$STANDIN_PORT" "Manus stand-in" "" true
}

# start_dev_vault starts `vault server -dev` with the plugin directory and
# exports VAULT_ADDR and VAULT_TOKEN for the CLI.
start_dev_vault() {
	echo "==> starting vault server -dev on 127.0.0.1:$VAULT_PORT (log: $work_dir/vault.log)"
	printf 'plugin_directory = "%s"\n' "$work_dir/plugins" > "$work_dir/vault.hcl"
	"$vault_bin" server -dev -dev-root-token-id=root -dev-no-store-token \
		-dev-listen-address="127.0.0.1:$VAULT_PORT" -config="$work_dir/vault.hcl" \
		> "$work_dir/vault.log" 2>&1 &
	local vault_pid=$!
	pids+=("$vault_pid")
	export VAULT_ADDR="http://127.0.0.1:$VAULT_PORT" VAULT_TOKEN=root
	wait_for_vault "$vault_pid" 200
}

# start_raft_vault starts a single-node `vault server` on Raft integrated
# storage under $work_dir/raft (production's storage: every lease is a
# durable, fsync'd Raft write), initialises and unseals it, and exports
# VAULT_ADDR and VAULT_TOKEN (the root token) for the CLI.
start_raft_vault() {
	echo "==> starting vault server on Raft storage on 127.0.0.1:$VAULT_PORT (log: $work_dir/vault.log)"
	start_raft_node vault "$VAULT_PORT" "$work_dir/raft"
	export VAULT_ADDR="http://127.0.0.1:$VAULT_PORT"
	init_and_unseal "$node_pid"
	"$vault_bin" secrets enable -path=secret -version=2 kv >/dev/null
	# KV v2 upgrades its storage layout after mounting; wait until it serves.
	for _ in $(seq 1 100); do
		"$vault_bin" kv put -mount=secret ready x=1 >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "the KV v2 mount did not become ready" >&2
	exit 1
}

# node_port BASE_PORT I prints the API port of node I (1 to N) of a Raft
# cluster: BASE_PORT+10*(I-1); its cluster port is one above.
node_port() {
	echo $(($1 + 10 * ($2 - 1)))
}

# will_listen_raft_cluster N BASE_PORT VARIABLE adds the ports of the N
# nodes of start_raft_cluster to the plan.
will_listen_raft_cluster() {
	local i
	for i in $(seq 1 "$1"); do
		will_listen_vault "$(node_port "$2" "$i")" "$3" "node$i"
	done
}

# start_raft_cluster N BASE_PORT starts N servers on Raft integrated storage,
# node i (1 to N) on 127.0.0.1:$(node_port BASE_PORT i), with its data,
# config and log under $work_dir as node<i>. The first is initialised and
# unsealed and is the active node; the others join it and are unsealed as
# standbys; all are voters when it returns. Exports VAULT_ADDR (the active
# node) and VAULT_TOKEN (the root token); node_addrs lists the nodes'
# addresses, the active node first.
start_raft_cluster() {
	local n=$1 base=$2 i port leader="http://127.0.0.1:$2"
	node_addrs=()
	for i in $(seq 1 "$n"); do
		port=$(node_port "$base" "$i")
		node_addrs+=("http://127.0.0.1:$port")
		echo "==> starting node$i on Raft storage on 127.0.0.1:$port (log: $work_dir/node$i.log)"
		if [ "$i" = 1 ]; then
			start_raft_node node1 "$port" "$work_dir/node1-raft"
			export VAULT_ADDR=$leader
			init_and_unseal "$node_pid"
			"$vault_bin" operator raft autopilot set-config -server-stabilization-time=1s >/dev/null
			continue
		fi
		start_raft_node "node$i" "$port" "$work_dir/node$i-raft" "$leader"
		# The unseal key goes only to the process this run started.
		wait_until_ready "$node_pid" "$port" "node$i" "$work_dir/node$i.log" true
		# Unsealing succeeds once the node has joined the cluster.
		for _ in $(seq 1 60); do
			VAULT_ADDR="http://127.0.0.1:$port" "$vault_bin" operator unseal "$unseal_key" >/dev/null 2>&1 && break
			sleep 0.5
		done
		wait_for_vault "$node_pid" 429 "http://127.0.0.1:$port" "$work_dir/node$i.log" # unsealed standby
	done
	for _ in $(seq 1 120); do
		[ "$("$vault_bin" operator raft list-peers -format=json | grep -c '"voter": true')" = "$n" ] && return 0
		sleep 0.5
	done
	echo "the Raft cluster did not reach $n voters" >&2
	exit 1
}

# start_raft_node NAME PORT DATA_DIR [LEADER_ADDR] starts a server on Raft
# storage in DATA_DIR, listening on 127.0.0.1:PORT (cluster traffic on
# PORT+1), joining the cluster of LEADER_ADDR if given, with
# $server_extra_config appended to its configuration $work_dir/NAME.hcl;
# its log is $work_dir/NAME.log. Sets node_pid.
start_raft_node() {
	local name=$1 port=$2 data=$3 leader=${4:-} join=""
	mkdir -p "$data"
	[ -z "$leader" ] || join="retry_join { leader_api_addr = \"$leader\" }"
	cat > "$work_dir/$name.hcl" <<-EOF
		plugin_directory = "$work_dir/plugins"
		disable_mlock    = true
		api_addr         = "http://127.0.0.1:$port"
		cluster_addr     = "https://127.0.0.1:$((port + 1))"
		storage "raft" {
		  path    = "$data"
		  node_id = "$name"
		  $join
		}
		listener "tcp" {
		  address         = "127.0.0.1:$port"
		  cluster_address = "127.0.0.1:$((port + 1))"
		  tls_disable     = true
		}
		${server_extra_config:-}
	EOF
	"$vault_bin" server -config="$work_dir/$name.hcl" > "$work_dir/$name.log" 2>&1 &
	node_pid=$!
	pids+=("$node_pid")
}

# init_and_unseal PID initialises the server at $VAULT_ADDR with one key
# share, unseals it and waits until it is active; exports VAULT_TOKEN (the
# root token) and sets unseal_key.
init_and_unseal() {
	unset VAULT_TOKEN
	wait_for_vault "$1" 501 # up, not initialised
	local init
	init=$("$vault_bin" operator init -key-shares=1 -key-threshold=1 -format=json)
	unseal_key=$(printf '%s' "$init" | tr -d ' \n' | sed -n 's/.*"unseal_keys_b64":\["\([^"]*\)".*/\1/p')
	VAULT_TOKEN=$(printf '%s' "$init" | tr -d ' \n' | sed -n 's/.*"root_token":"\([^"]*\)".*/\1/p')
	export VAULT_TOKEN
	"$vault_bin" operator unseal "$unseal_key" >/dev/null
	wait_for_vault "$1" 200 # active
}

# wait_for_vault PID STATUS [ADDR [LOG]] waits until the server PID
# listens at ADDR (default $VAULT_ADDR) and its sys/health answers STATUS;
# if the server exits first, its log (default $work_dir/vault.log) is shown.
wait_for_vault() {
	local addr=${3:-$VAULT_ADDR} log=${4:-$work_dir/vault.log}
	wait_until_ready "$1" "${addr##*:}" server "$log" health_is "$addr" "$2"
}

sha256_of() {
	if command -v sha256sum >/dev/null; then
		sha256sum "$1" | cut -d' ' -f1
	else
		shasum -a 256 "$1" | cut -d' ' -f1
	fi
}

# random_secret prints a fresh client secret for the stand-in.
random_secret() {
	head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# mount_manus CLIENT_ID CLIENT_SECRET mounts the registered plugin at manus/
# and configures it against the stand-in.
mount_manus() {
	"$vault_bin" secrets enable -path=manus "$plugin_name"
	"$vault_bin" write manus/config client_id="$1" client_secret="$2" \
		base_url="http://127.0.0.1:$STANDIN_PORT"
}

# register_plugin [extra `vault plugin register` flags]
register_plugin() {
	"$vault_bin" plugin register -sha256="$(sha256_of "$work_dir/plugins/$plugin_name")" \
		-version="$plugin_version" "$@" secret "$plugin_name"
}
