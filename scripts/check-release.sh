#!/usr/bin/env bash
# Checks what `make release` produced: one binary per platform named
# <plugin>_<version>_<os>_<arch>, SHA256SUMS that verifies them, and in each
# binary the build settings that make it a release: static (CGO_ENABLED=0),
# -trimpath, the right GOOS/GOARCH, built by the Go toolchain go.mod pins,
# and the version stamped in (-trimpath keeps -ldflags out of the build
# info, so the binary's strings are checked, and the binary for this
# machine is asked with --version).
#
# Beside each binary, its CycloneDX SBOM (<binary>.sbom.json) must parse,
# name the main module at the release version, the binary's Go version,
# platform and SHA-256, list exactly the modules the binary links, and list
# github.com/hashicorp/vault/sdk and golang.org/x/oauth2 at go.mod's versions;
# it must carry no timestamp and the serial number derived from the
# binary's SHA-256 (what makes it reproducible).
# THIRD_PARTY_LICENSES.md must match the SBOMs with every license allowed,
# and RELEASE_NOTES.md must name the version, Go version, commit and every
# checksum.
#
# The image archive (<plugin>_<version>_oci-image.tar) is opened with the
# library that wrote it (releasetool image -check, internal/ociimage): one
# image per Linux platform, each holding only a binary byte-identical to the
# release binary of that platform at /<plugin>, as its entrypoint, with the
# OCI labels (version, this commit, source, license, creation time: the
# commit's time or SOURCE_DATE_EPOCH) and the binary's SHA-256; and it must
# be exactly what building it again from these binaries gives. Its digests
# file (<plugin>_<version>_oci-image.digests) must list the archive's index,
# manifest and config digests, and SHA256SUMS must list both.
#
# The signature (SHA256SUMS.sig) and the reproducibility are checked by
# scripts/check-signature.sh and scripts/check-reproducible.sh, which
# `make release-verify` runs after this.
set -euo pipefail
dist=$1 plugin=$2 version=$3 platforms=$4

fail() { echo "check-release: $*" >&2; exit 1; }

tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
go build -o "$tool/releasetool" ./internal/releasetool
module=$(go list -m)
toolchain=$(sed -n 's/^toolchain[[:space:]]*//p' go.mod)
[ -n "$toolchain" ] || fail "go.mod has no toolchain line"
requires=()
for mod in github.com/hashicorp/vault/sdk golang.org/x/oauth2; do
	requires+=(-require "$(go list -m -f '{{.Path}}@{{.Version}}' "$mod")")
done

(cd "$dist" && sha256sum --check --strict --quiet SHA256SUMS) || fail "SHA256SUMS does not verify"
expected=0 binaries=0 sboms=()
for platform in $platforms; do
	os=${platform%/*} arch=${platform#*/}
	name=${plugin}_${version}_${os}_${arch}
	bin="$dist/$name"
	[ -f "$bin" ] || fail "missing $bin"
	grep -q " $name\$" "$dist/SHA256SUMS" || fail "$bin is not in SHA256SUMS"
	info=$(go version -m "$bin")
	for want in "GOOS=$os" "GOARCH=$arch" "CGO_ENABLED=0" "-trimpath=true"; do
		grep -q -- "$want" <<<"$info" || fail "$bin: build info lacks $want"
	done
	built_with=$(head -n1 <<<"$info" | awk '{ print $2 }')
	[ "$built_with" = "$toolchain" ] || fail "$bin was built with $built_with, not go.mod's toolchain $toolchain"
	grep -aq "v$version" "$bin" || fail "$bin: v$version is not stamped in"
	if [ "$os/$arch" = "$(go env GOOS)/$(go env GOARCH)" ]; then
		reported=$("$bin" --version)
		[ "$reported" = "v$version" ] || fail "$bin --version says $reported, want v$version"
	fi

	sbom="$bin.sbom.json"
	[ -f "$sbom" ] || fail "missing $sbom"
	grep -q " $name.sbom.json\$" "$dist/SHA256SUMS" || fail "$sbom is not in SHA256SUMS"
	"$tool/releasetool" sbom -module "$module" -version "v$version" -binary "$bin" \
		-os "$os" -arch "$arch" "${requires[@]}" "$sbom" || fail "$sbom is not in order"
	sboms+=("$sbom")
	expected=$((expected + 2)) binaries=$((binaries + 1))
done

image_name=${plugin}_${version}_oci-image.tar
image="$dist/$image_name"
[ -f "$image" ] || fail "missing $image"
grep -q " $image_name\$" "$dist/SHA256SUMS" || fail "$image is not in SHA256SUMS"
image_binaries=()
for platform in $platforms; do
	[ "${platform%/*}" = linux ] && image_binaries+=("$platform=$dist/${plugin}_${version}_${platform/\//_}")
done
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if git status --porcelain --untracked-files=no 2>/dev/null | grep -q .; then revision+=-dirty; fi
created=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
"$tool/releasetool" image -check -o "$image" -name "$plugin" -version "v$version" -revision "$revision" \
	-source "https://$module" -created "$created" "${image_binaries[@]}" || fail "$image is not in order"
digests_name=${image_name%.tar}.digests
grep -q " $digests_name\$" "$dist/SHA256SUMS" || fail "$dist/$digests_name is not in SHA256SUMS"
"$tool/releasetool" digests -check -o "$dist/$digests_name" "$image" || fail "$dist/$digests_name is not in order"
expected=$((expected + 2))

licenses="$dist/THIRD_PARTY_LICENSES.md"
grep -q " THIRD_PARTY_LICENSES.md\$" "$dist/SHA256SUMS" || fail "$licenses is not in SHA256SUMS"
"$tool/releasetool" licenses -check -o "$licenses" "${sboms[@]}" || fail "$licenses is not in order"
expected=$((expected + 1))
[ "$(wc -l < "$dist/SHA256SUMS")" -eq "$expected" ] || fail "SHA256SUMS lists other files"

notes="$dist/RELEASE_NOTES.md"
[ -f "$notes" ] || fail "missing $notes"
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
for want in "# vault-plugin-secrets-manus v$version" "$(go env GOVERSION)" "commit $commit" \
	"## Container image" "oci-archive:$image_name:$version"; do
	grep -qF -- "$want" "$notes" || fail "$notes does not name $want"
done
while read -r line; do
	grep -qxF -- "$line" "$notes" || fail "$notes lacks the checksum line $line"
done < "$dist/SHA256SUMS"

echo "check-release: $binaries binaries ($toolchain) with their SBOMs, the image archive and its digests, the license list, SHA256SUMS and release notes for v$version are in order"
