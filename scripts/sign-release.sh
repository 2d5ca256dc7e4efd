#!/usr/bin/env bash
# The signing step of `make release`: writes DIST/SHA256SUMS.sig, a detached
# GPG signature of DIST/SHA256SUMS (binary, as HashiCorp's releases have),
# with the key RELEASE_SIGNING_KEY names (a fingerprint, key ID or user ID
# in the keyring of GNUPGHOME, or gpg's default home). The key never comes
# near the repository: gpg and its agent hold it, and ask for its
# passphrase if it has one.
#
#   RELEASE_SIGNING_KEY=<fingerprint> scripts/sign-release.sh DIST
#
# Without RELEASE_SIGNING_KEY it signs nothing and says so, loudly: such a
# release is for testing, not for publishing. After signing, it verifies
# the release as a user would (scripts/verify-release.sh) against
# RELEASE_PUBLIC_KEY, the published key (default: release-key.asc in the
# repository), and fails if the signing key is not that key, since nobody
# could verify such a release; with no published key yet it warns.
set -euo pipefail

dist=${1:?usage: scripts/sign-release.sh DIST}
public_key=${RELEASE_PUBLIC_KEY:-release-key.asc}

if [ -z "${RELEASE_SIGNING_KEY:-}" ]; then
	rm -f "$dist/SHA256SUMS.sig"
	cat >&2 <<-EOF
		sign-release: NOT SIGNED: RELEASE_SIGNING_KEY is not set, so $dist/SHA256SUMS has no
		sign-release: SHA256SUMS.sig. Do not publish this release; a maintainer signs with
		sign-release: RELEASE_SIGNING_KEY=<fingerprint> make release (docs/releases.md).
	EOF
	exit 0
fi

"$(dirname "$0")/ensure-gpg.sh"
gpg --batch --yes --local-user "$RELEASE_SIGNING_KEY" --detach-sign \
	--output "$dist/SHA256SUMS.sig" "$dist/SHA256SUMS" ||
	{ rm -f "$dist/SHA256SUMS.sig"; echo "sign-release: gpg could not sign with RELEASE_SIGNING_KEY=$RELEASE_SIGNING_KEY" >&2; exit 1; }
echo "sign-release: signed $dist/SHA256SUMS with $RELEASE_SIGNING_KEY: $dist/SHA256SUMS.sig"

if [ -f "$public_key" ]; then
	"$(dirname "$0")/verify-release.sh" "$dist" "$public_key" ||
		{ echo "sign-release: the signature does not verify against the published key $public_key; publish the signing key's public half there first, or sign with the published key" >&2; exit 1; }
else
	echo "sign-release: WARNING: there is no published key at $public_key, so users cannot verify this signature yet (docs/releases.md: publishing the release key)" >&2
fi
