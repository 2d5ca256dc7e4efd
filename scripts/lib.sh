# Shared by scripts/dev.sh and scripts/bench-vault.sh: build the plugin, run
# the Manus stand-in and a dev Vault with the plugin registered. Source it
# from the repository root after setting VAULT_PORT, STANDIN_PORT and
# work_dir.

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
	mkdir -p "$work_dir/raft"
	cat > "$work_dir/vault.hcl" <<-EOF
		plugin_directory = "$work_dir/plugins"
		disable_mlock    = true
		api_addr         = "http://127.0.0.1:$VAULT_PORT"
		cluster_addr     = "http://127.0.0.1:$((VAULT_PORT + 1))"
		storage "raft" {
		  path    = "$work_dir/raft"
		  node_id = "bench"
		}
		listener "tcp" {
		  address         = "127.0.0.1:$VAULT_PORT"
		  cluster_address = "127.0.0.1:$((VAULT_PORT + 1))"
		  tls_disable     = true
		}
	EOF
	"$vault_bin" server -config="$work_dir/vault.hcl" > "$work_dir/vault.log" 2>&1 &
	local vault_pid=$!
	pids+=("$vault_pid")
	export VAULT_ADDR="http://127.0.0.1:$VAULT_PORT"
	unset VAULT_TOKEN
	wait_for_vault "$vault_pid" 501 # up, not initialised
	local init key
	init=$("$vault_bin" operator init -key-shares=1 -key-threshold=1 -format=json)
	key=$(printf '%s' "$init" | tr -d ' \n' | sed -n 's/.*"unseal_keys_b64":\["\([^"]*\)".*/\1/p')
	VAULT_TOKEN=$(printf '%s' "$init" | tr -d ' \n' | sed -n 's/.*"root_token":"\([^"]*\)".*/\1/p')
	export VAULT_TOKEN
	"$vault_bin" operator unseal "$key" >/dev/null
	wait_for_vault "$vault_pid" 200 # active
	"$vault_bin" secrets enable -path=secret -version=2 kv >/dev/null
	# KV v2 upgrades its storage layout after mounting; wait until it serves.
	for _ in $(seq 1 100); do
		"$vault_bin" kv put -mount=secret ready x=1 >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "the KV v2 mount did not become ready" >&2
	exit 1
}

# wait_for_vault PID STATUS waits until sys/health answers STATUS.
wait_for_vault() {
	for _ in $(seq 1 150); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "$VAULT_ADDR/v1/sys/health")" = "$2" ] && return 0
		kill -0 "$1" 2>/dev/null || { cat "$work_dir/vault.log"; exit 1; }
		sleep 0.2
	done
	echo "vault did not reach health status $2; see $work_dir/vault.log" >&2
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
