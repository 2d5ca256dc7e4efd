#!/usr/bin/env bash
# The one recipe for the plugin binary. `make build`, `make release`,
# `make dev`, `make bench-vault` and the end-to-end harness all build
# through it, so the flags are written once.
#
#   scripts/build-plugin.sh OUTPUT [VERSION]
#
# Run it from a module root (the repository, or a checkout of an older ref).
# VERSION (default: "v" + the VERSION file) is stamped into the package
# variable Version; its import path is the module path go.mod declares, so
# that path is written nowhere else. The binary is static (CGO_ENABLED=0)
# and built with -trimpath. GOOS and GOARCH pass through; EXTRA_LDFLAGS
# (releases: "-s -w") and EXTRA_BUILD_FLAGS (releases: -buildvcs=false)
# add to the flags.
set -euo pipefail

out=${1:?usage: scripts/build-plugin.sh OUTPUT [VERSION]}
version=${2:-v$(tr -d '[:space:]' < VERSION)}
go=${GO:-go}
module=$("$go" list -m)

# shellcheck disable=SC2086 # EXTRA_BUILD_FLAGS is a list of flags
CGO_ENABLED=0 exec "$go" build -trimpath ${EXTRA_BUILD_FLAGS:-} \
	-ldflags "${EXTRA_LDFLAGS:+$EXTRA_LDFLAGS }-X $module.Version=$version" \
	-o "$out" ./cmd/vault-plugin-secrets-manus
