#!/usr/bin/env bash
# Builds the Go vulnerability database govulncheck checks against, offline,
# from a pinned version of the golang.org/x/vulndb module, and prints the
# database's folder (for `govulncheck -db file://FOLDER`).
#
#   scripts/ensure-vulndb.sh VULNDB_VERSION DEST
#
# The module, fetched through the Go module proxy like any other, carries
# the reports as OSV JSON files (data/osv); its own command cmd/indexdb
# writes them as a database in the layout vuln.go.dev serves (index/db.json,
# index/modules.json, index/vulns.json, ID/<id>.json). DEST is built once
# per version (a folder outside the clone, beside the other tools), under a
# lock so parallel runs wait for one build; the result is moved into place
# whole, so a half-written database is never used. The reports carry no
# modification times (vulndb sets them from its git history, which the
# module does not have), so the database's "modified" is the zero time:
# VULNDB_VERSION, not that date, says how recent it is.
set -euo pipefail

version=${1:?usage: scripts/ensure-vulndb.sh VULNDB_VERSION DEST}
dest=${2:?usage: scripts/ensure-vulndb.sh VULNDB_VERSION DEST}
go=${GO:-go}

log() { printf 'ensure-vulndb: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/lib-module-build.sh
source "$(dirname "$0")/lib-module-build.sh"

built() { [ -s "$dest/index/db.json" ] && [ -s "$dest/index/modules.json" ] && [ -d "$dest/ID" ]; }

if built; then
	echo "$dest"
	exit 0
fi
lock_build_cache "$(dirname "$dest")" ".vulndb-build.lock"
if built; then
	echo "$dest"
	exit 0
fi

tmp=$(mktemp -d "$(dirname "$dest")/.vulndb-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "building the Go vulnerability database from golang.org/x/vulndb@$version into $dest"
# Outside any module, so this repository's go.mod plays no part.
mod_json=$(cd "$tmp" && "$go" mod download -json "golang.org/x/vulndb@$version") ||
	die "go mod download golang.org/x/vulndb@$version failed (is the Go module proxy reachable?)"
mod_dir=$(printf '%s' "$mod_json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n1)
[ -d "$mod_dir/data/osv" ] || die "golang.org/x/vulndb@$version has no data/osv folder of reports"
(cd "$tmp" && GOBIN="$tmp/bin" "$go" install "golang.org/x/vulndb/cmd/indexdb@$version") ||
	die "building golang.org/x/vulndb/cmd/indexdb@$version failed"
"$tmp/bin/indexdb" -vulns "$mod_dir/data/osv" -out "$tmp/db" || die "indexdb could not write the database"
count=$(find "$tmp/db/ID" -name '*.json' | wc -l)
[ "$count" -gt 0 ] || die "indexdb wrote a database without entries"
rm -rf "$dest"
mv "$tmp/db" "$dest"
log "$count reports in $dest"
echo "$dest"
