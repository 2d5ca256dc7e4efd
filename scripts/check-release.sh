#!/usr/bin/env bash
# Checks what `make release` produced: one binary per platform named
# <plugin>_<version>_<os>_<arch>, SHA256SUMS that verifies them, and in each
# binary the build settings that make it a release: static (CGO_ENABLED=0),
# -trimpath and the right GOOS/GOARCH, and the version stamped in (-trimpath
# keeps -ldflags out of the build info, so the binary's strings are checked,
# and the binary for this machine is asked with --version).
set -euo pipefail
dist=$1 plugin=$2 version=$3 platforms=$4

fail() { echo "check-release: $*" >&2; exit 1; }

(cd "$dist" && sha256sum --check --strict --quiet SHA256SUMS) || fail "SHA256SUMS does not verify"
expected=0
for platform in $platforms; do
	os=${platform%/*} arch=${platform#*/}
	bin="$dist/${plugin}_${version}_${os}_${arch}"
	[ -f "$bin" ] || fail "missing $bin"
	grep -q " ${plugin}_${version}_${os}_${arch}\$" "$dist/SHA256SUMS" || fail "$bin is not in SHA256SUMS"
	info=$(go version -m "$bin")
	for want in "GOOS=$os" "GOARCH=$arch" "CGO_ENABLED=0" "-trimpath=true"; do
		grep -q -- "$want" <<<"$info" || fail "$bin: build info lacks $want"
	done
	grep -aq "v$version" "$bin" || fail "$bin: v$version is not stamped in"
	if [ "$os/$arch" = "$(go env GOOS)/$(go env GOARCH)" ]; then
		reported=$("$bin" --version)
		[ "$reported" = "v$version" ] || fail "$bin --version says $reported, want v$version"
	fi
	expected=$((expected + 1))
done
[ "$(wc -l < "$dist/SHA256SUMS")" -eq "$expected" ] || fail "SHA256SUMS lists other files"
echo "check-release: $expected binaries and SHA256SUMS for v$version are in order"
