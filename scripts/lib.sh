# Shared by scripts/dev.sh, scripts/bench-vault.sh and
# scripts/bench-openbao.sh: build the plugin, run the Manus stand-in and a
# dev Vault, a Vault on Raft storage or a Raft cluster, with the plugin
# registered. Source it from the repository root after setting VAULT_PORT
# (or the cluster's ports), STANDIN_PORT, work_dir and vault_bin (the
# server binary, Vault or OpenBao).

plugin_name=vault-plugin-secrets-manus
plugin_version="v$(tr -d '[:space:]' < VERSION)"
pids=()

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
	pids+=($!)
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
	for _ in $(seq 1 150); do
		curl -fsS "$VAULT_ADDR/v1/sys/health" >/dev/null 2>&1 && return 0
		kill -0 "$vault_pid" 2>/dev/null || { cat "$work_dir/vault.log"; exit 1; }
		sleep 0.2
	done
	echo "vault did not become ready; see $work_dir/vault.log" >&2
	exit 1
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

# start_raft_cluster N BASE_PORT starts N servers on Raft integrated storage,
# node i (1 to N) on 127.0.0.1:BASE_PORT+10*(i-1), with its data, config and
# log under $work_dir as node<i>. The first is initialised and unsealed and
# is the active node; the others join it and are unsealed as standbys; all
# are voters when it returns. Exports VAULT_ADDR (the active node) and
# VAULT_TOKEN (the root token); node_addrs lists the nodes' addresses, the
# active node first.
start_raft_cluster() {
	local n=$1 base=$2 i port leader="http://127.0.0.1:$2"
	node_addrs=()
	for i in $(seq 1 "$n"); do
		port=$((base + 10 * (i - 1)))
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

# wait_for_vault PID STATUS [ADDR [LOG]] waits until sys/health at ADDR
# (default $VAULT_ADDR) answers STATUS; if the server exits first, its log
# (default $work_dir/vault.log) is shown.
wait_for_vault() {
	local addr=${3:-$VAULT_ADDR} log=${4:-$work_dir/vault.log}
	for _ in $(seq 1 150); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "$addr/v1/sys/health")" = "$2" ] && return 0
		kill -0 "$1" 2>/dev/null || { cat "$log"; exit 1; }
		sleep 0.2
	done
	echo "the server at $addr did not reach health status $2; see $log" >&2
	exit 1
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
