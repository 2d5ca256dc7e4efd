# Shared by scripts/ensure-vault.sh and scripts/ensure-prometheus.sh: the
# steps of building a tool from its source on the Go module proxy into a
# cache folder outside the clone. Source it after defining log and die.

# lock_build_cache DIR LOCKFILE takes an exclusive lock on DIR/LOCKFILE for
# the rest of the script, so that parallel test runs wait for one build
# instead of starting their own (two builds would starve a two-core
# machine). Without flock(1) there is no lock.
lock_build_cache() {
	mkdir -p "$1"
	exec 9>"$1/$2"
	if command -v flock >/dev/null; then flock 9; fi
}

# copy_module_source MODULE@VERSION DEST downloads the module through the
# Go module proxy and copies its source to DEST, writable (the module
# cache's copy is read-only and must stay untouched).
copy_module_source() {
	local mod_json mod_dir
	mod_json=$(go mod download -json "$1") ||
		die "go mod download $1 failed (is the Go module proxy reachable?)"
	mod_dir=$(printf '%s' "$mod_json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n1)
	[ -d "$mod_dir" ] || die "could not find the downloaded source of $1 (go mod download printed no Dir)"
	rm -rf "$2"
	cp -r "$mod_dir" "$2"
	chmod -R u+w "$2"
}

# build_in DIR WHAT COMMAND... runs COMMAND in DIR with its output on
# stderr, logging "still building WHAT" every minute so a CI log shows the
# build is alive, and dies if it fails. COMMAND may be a function of the
# caller's: the locals here carry a prefix because bash scopes them
# dynamically, and a plain "dir" would hide the caller's own.
build_in() {
	local build_in_dir=$1 build_in_what=$2
	shift 2
	log "compiling (go build) in $build_in_dir ..."
	(
		cd "$build_in_dir" || exit 1
		(while sleep 60; do log "still building $build_in_what ..."; done) &
		build_in_beat=$!
		trap 'kill $build_in_beat 2>/dev/null || true' EXIT
		"$@"
	) >&2 || die "building $build_in_what failed; see the go build output above"
}
