#!/usr/bin/env bash
# Runs a command with a signing key made for this run only, as
# `make release-check` does: a new ed25519 key without passphrase in a new
# GNUPGHOME, valid for a day, whose fingerprint is exported as
# RELEASE_SIGNING_KEY and whose public half, as RELEASE_PUBLIC_KEY, stands in
# for the maintainers' published key. Both are deleted afterwards, with the
# gpg-agent the key started.
#
#   scripts/with-throwaway-key.sh COMMAND [ARG]...
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: scripts/with-throwaway-key.sh COMMAND [ARG]..." >&2; exit 2; }
"$(dirname "$0")/ensure-gpg.sh"

home=$(mktemp -d)
chmod 700 "$home"
cleanup() {
	GNUPGHOME="$home" gpgconf --kill all 2>/dev/null || true
	rm -rf "$home"
}
trap cleanup EXIT
export GNUPGHOME=$home
gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
	--quick-gen-key "vault-plugin-secrets-manus throwaway release-check key <release-check@invalid>" ed25519 sign 1d 2>/dev/null
RELEASE_SIGNING_KEY=$(gpg --batch --with-colons --list-secret-keys | awk -F: '$1 == "fpr" { print $10; exit }')
[ -n "$RELEASE_SIGNING_KEY" ] || { echo "with-throwaway-key: gpg made no key" >&2; exit 1; }
RELEASE_PUBLIC_KEY=$home/release-key.asc
gpg --batch --armor --export "$RELEASE_SIGNING_KEY" >"$RELEASE_PUBLIC_KEY"
export RELEASE_SIGNING_KEY RELEASE_PUBLIC_KEY
echo "with-throwaway-key: signing with throwaway key $RELEASE_SIGNING_KEY" >&2
"$@"
