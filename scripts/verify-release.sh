#!/usr/bin/env bash
# Verifies a release the way a user should before registering it: the
# detached signature SHA256SUMS.sig must be a good signature of SHA256SUMS
# by the release key, and every file SHA256SUMS lists must be there and
# match it.
#
#   scripts/verify-release.sh DIST PUBLIC_KEY [FINGERPRINT]
#
# PUBLIC_KEY is the maintainers' published public key (armored or binary);
# only a signature by its primary key, or a subkey of it, is accepted, and
# with FINGERPRINT that primary key must be the one named (what a user
# compares against the fingerprint SECURITY.md publishes). The signature is
# checked with gpgv against a keyring holding only that key, so no other key
# on the machine, trusted or not, can vouch for the release. Each refusal
# says why: not signed, a changed SHA256SUMS (BAD signature), a signature by
# another key, a file that does not match.
set -euo pipefail

dist=${1:?usage: scripts/verify-release.sh DIST PUBLIC_KEY [FINGERPRINT]}
public_key=${2:?usage: scripts/verify-release.sh DIST PUBLIC_KEY [FINGERPRINT]}
want_fpr=$(printf '%s' "${3:-}" | tr -d ' ' | tr '[:lower:]' '[:upper:]')

fail() { echo "verify-release: $*" >&2; exit 1; }

"$(dirname "$0")/ensure-gpg.sh"
[ -f "$dist/SHA256SUMS" ] || fail "$dist has no SHA256SUMS"
[ -f "$dist/SHA256SUMS.sig" ] || fail "refused: SHA256SUMS is not signed ($dist has no SHA256SUMS.sig)"
[ -f "$public_key" ] || fail "no public key at $public_key"

tmp=$(mktemp -d)
trap 'GNUPGHOME="$tmp/home" gpgconf --kill all 2>/dev/null || true; rm -rf "$tmp"' EXIT
mkdir -m 700 "$tmp/home"
# The key's primary fingerprints, read without importing it anywhere.
key_fprs=$(GNUPGHOME="$tmp/home" gpg --batch --with-colons --show-keys "$public_key" 2>/dev/null |
	awk -F: '$1 == "pub" { primary = 1; next } $1 == "sub" { primary = 0 } $1 == "fpr" && primary { print $10; primary = 0 }')
[ -n "$key_fprs" ] || fail "$public_key holds no OpenPGP public key"
if [ -n "$want_fpr" ]; then
	grep -qx "$want_fpr" <<<"$key_fprs" || fail "$public_key is not the key with fingerprint $want_fpr (it holds $(tr '\n' ' ' <<<"$key_fprs"))"
fi
if grep -q -- '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$public_key"; then
	GNUPGHOME="$tmp/home" gpg --batch --dearmor <"$public_key" >"$tmp/keyring.gpg"
else
	cp "$public_key" "$tmp/keyring.gpg"
fi

status=0
gpgv --status-fd 3 --keyring "$tmp/keyring.gpg" "$dist/SHA256SUMS.sig" "$dist/SHA256SUMS" \
	3>"$tmp/status" 2>"$tmp/gpgv.log" || status=$?
if grep -q '^\[GNUPG:\] BADSIG' "$tmp/status"; then
	fail "refused: BAD signature: SHA256SUMS is not the file the release key signed (changed after signing)"
fi
if grep -qE '^\[GNUPG:\] (NO_PUBKEY|ERRSIG)' "$tmp/status"; then
	fail "refused: SHA256SUMS.sig is not a signature by the release key ($(awk '$2 == "ERRSIG" { print "made by key " $3 }' "$tmp/status" | head -n1))"
fi
signer=$(awk '$2 == "VALIDSIG" { print ($12 != "" ? $12 : $3) }' "$tmp/status" | head -n1)
if [ "$status" -ne 0 ] || [ -z "$signer" ]; then
	cat "$tmp/gpgv.log" >&2
	fail "refused: gpgv did not find a good signature of SHA256SUMS (exit status $status)"
fi
grep -qx "$signer" <<<"$key_fprs" || fail "refused: signed by $signer, which is not the release key's primary key"
echo "verify-release: SHA256SUMS.sig is a good signature of SHA256SUMS by $signer"

(cd "$dist" && sha256sum --check --strict --quiet SHA256SUMS) || fail "refused: files in $dist do not match SHA256SUMS"
echo "verify-release: the $(wc -l <"$dist/SHA256SUMS") files SHA256SUMS lists match it"
