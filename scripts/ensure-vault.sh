#!/usr/bin/env bash
# Finds a Vault binary the tests and `make dev` can run, building one from the
# Go module proxy when the machine has none. Prints the binary's path on stdout;
# progress goes to stderr.
#
# Order: $VAULT_BIN, then `vault` on PATH at or above MIN_VAULT_VERSION, then a
# cached build of VAULT_BUILD_VERSION under VAULT_CACHE_DIR (outside the repo so
# a fresh clone reuses it), built on first use.
#
# A caller that sets VAULT_BUILD_VERSION (`make test-compat` does, once per
# version) gets exactly that version: $VAULT_BIN must report it, `vault` on
# PATH is used only if it does, and otherwise the cached build is found or made.
set -euo pipefail

# Vault is built with the machine's own Go, not the toolchain go.mod pins
# for the plugin (which the Makefile exports as GOTOOLCHAIN): it is a test
# fixture, never shipped, so the standard library's fixes in the pinned
# toolchain do not matter to it; Vault v1.21.0 was released for, and builds
# with, the Go of its day (go.mod: go 1.25.1); and the cached binary is
# found by version alone, so a toolchain change neither forces the 10 to 15
# minute rebuild nor leaves machines with binaries built by different Gos.
export GOTOOLCHAIN=local

MIN_VAULT_VERSION=${MIN_VAULT_VERSION:-1.16.0}
exact_version=${VAULT_BUILD_VERSION:-}
VAULT_BUILD_VERSION=${VAULT_BUILD_VERSION:-1.21.0}
VAULT_CACHE_DIR=${VAULT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-manus}
cached_bin="$VAULT_CACHE_DIR/vault-$VAULT_BUILD_VERSION/vault"

log() { printf 'ensure-vault: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/lib-module-build.sh
source "$(dirname "$0")/lib-module-build.sh"

[[ $VAULT_BUILD_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
	die "VAULT_BUILD_VERSION=$VAULT_BUILD_VERSION is not a Vault release number like 1.21.0"

# version_of prints the x.y.z a vault binary reports, or nothing.
version_of() {
	"$1" version 2>/dev/null | sed -n 's/^Vault v\([0-9][0-9.]*\).*/\1/p' | head -n1
}

# sdk_override prints the released github.com/hashicorp/vault/sdk a Vault
# release must be built with instead of the one its go.mod requires, when
# that one lacks code the release's own (unreleased, in-tree) SDK had;
# nothing when go.mod's is right. 1.16.x call OCSP settings
# (VerifyConfig.OcspThisUpdateMaxAge, OcspMaxRetries) first released in
# SDK v0.12.0, and 1.16.1 and later require the go-ldap that v0.12.0 expects.
sdk_override() {
	case $1 in
	1.16.*) echo v0.12.0 ;;
	esac
}

# at_least succeeds when version $1 >= version $2.
at_least() {
	[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# acceptable succeeds when version $1 may be used: exactly the requested
# version if there is one, else any at or above MIN_VAULT_VERSION.
acceptable() {
	if [ -n "$exact_version" ]; then
		[ "$1" = "$exact_version" ]
	else
		[ -n "$1" ] && at_least "$1" "$MIN_VAULT_VERSION"
	fi
}

if [ -n "${VAULT_BIN:-}" ]; then
	[ -x "$VAULT_BIN" ] || die "VAULT_BIN=$VAULT_BIN is not an executable file"
	if [ -n "$exact_version" ]; then
		v=$(version_of "$VAULT_BIN")
		acceptable "$v" || die "VAULT_BIN=$VAULT_BIN is Vault '${v:-unknown}', not the requested $exact_version (unset VAULT_BIN)"
	fi
	echo "$VAULT_BIN"
	exit 0
fi

if on_path=$(command -v vault 2>/dev/null); then
	v=$(version_of "$on_path")
	if acceptable "$v"; then
		echo "$on_path"
		exit 0
	fi
	log "ignoring $on_path (version '${v:-unknown}' is not ${exact_version:-$MIN_VAULT_VERSION or newer})"
fi

if [ -x "$cached_bin" ] && [ -n "$(version_of "$cached_bin")" ]; then
	echo "$cached_bin"
	exit 0
fi

command -v go >/dev/null || die "no vault binary found and no Go toolchain to build one; install Vault >= $MIN_VAULT_VERSION or set VAULT_BIN"

# One build at a time per cache folder, whatever the version.
lock_build_cache "$VAULT_CACHE_DIR" .build.lock
if [ -x "$cached_bin" ] && [ -n "$(version_of "$cached_bin")" ]; then
	echo "$cached_bin"
	exit 0
fi

log "no ${exact_version:+matching }Vault found; building Vault v$VAULT_BUILD_VERSION from the Go module proxy"
log "this takes 10 to 15 minutes on 2 cores the first time; the binary is cached in $VAULT_CACHE_DIR"

src="$VAULT_CACHE_DIR/src-$VAULT_BUILD_VERSION"
copy_module_source "github.com/hashicorp/vault@v$VAULT_BUILD_VERSION" "$src"
# The module zip lacks the api/ and sdk/ sub-modules these replace lines point
# at; dropping them makes Go use the released versions go.mod already requires.
sed -i -E '/^replace[[:space:]]+github\.com\/hashicorp\/vault\/(api|api\/auth\/approle|api\/auth\/kubernetes|api\/auth\/userpass|sdk)[[:space:]]+=>[[:space:]]+\.\//d' "$src/go.mod"
sdk=$(sdk_override "$VAULT_BUILD_VERSION")
if [ -n "$sdk" ]; then
	log "using the released Vault SDK $sdk: the one v$VAULT_BUILD_VERSION's go.mod requires lacks code its own SDK had"
	(cd "$src" && go mod edit -require="github.com/hashicorp/vault/sdk@$sdk")
fi

tmp_bin="$VAULT_CACHE_DIR/vault-$VAULT_BUILD_VERSION/vault.tmp"
mkdir -p "$(dirname "$cached_bin")"
build_in "$src" "Vault v$VAULT_BUILD_VERSION" \
	env CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags='-s -w' -o "$tmp_bin" .
mv "$tmp_bin" "$cached_bin"
rm -rf "$src"

v=$(version_of "$cached_bin")
[ -n "$v" ] || die "the Vault binary built at $cached_bin does not run"
log "built Vault v$v at $cached_bin"
echo "$cached_bin"
