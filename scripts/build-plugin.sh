#!/usr/bin/env bash
# The one recipe for the plugin binary. `make build`, `make release`,
# `make dev`, `make bench-vault` and the end-to-end harness all build
# through it, so the flags are written once.
#
#   scripts/build-plugin.sh [--release] OUTPUT [VERSION]
#
# Run it from a module root (the repository, or a checkout of an older ref).
# VERSION (default: "v" + the VERSION file) is stamped into the package
# variable Version; its import path is the module path go.mod declares, so
# that path is written nowhere else. The binary is static (CGO_ENABLED=0)
# and built with -trimpath; GOOS and GOARCH pass through. --release also
# strips the symbol tables (-s -w) and leaves the VCS stamp out
# (-buildvcs=false), as release binaries are built.
set -euo pipefail

ldflags=() build_flags=()
if [ "${1:-}" = --release ]; then
	ldflags=(-s -w)
	build_flags=(-buildvcs=false)
	shift
fi
out=${1:?usage: scripts/build-plugin.sh [--release] OUTPUT [VERSION]}
version=${2:-v$(tr -d '[:space:]' < VERSION)}
go=${GO:-go}
# GOWORK=off: inside a workspace `go list -m` names every module in it.
module=$(GOWORK=off "$go" list -m)

CGO_ENABLED=0 exec "$go" build -trimpath "${build_flags[@]}" \
	-ldflags "${ldflags[*]} -X $module.Version=$version" \
	-o "$out" ./cmd/vault-plugin-secrets-manus
