#!/usr/bin/env bash
# Makes sure GnuPG can sign and verify: gpg, gpgv, gpg-agent and gpgconf on
# PATH. A new machine of the kind CI runs on has Debian's gnupg already;
# where it is missing, root on Debian gets it installed (apt-get), anyone
# else a message saying what to install. Prints nothing on success.
set -euo pipefail

log() { printf 'ensure-gpg: %s\n' "$*" >&2; }

missing() {
	local tool
	for tool in gpg gpgv gpg-agent gpgconf; do
		command -v "$tool" >/dev/null || return 0
	done
	return 1
}

missing || exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	log "installing Debian's gpg, gpgv, gpg-agent (signing and verifying the release's SHA256SUMS)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q --no-install-recommends gpg gpgv gpg-agent >&2 ||
		{ apt-get update -q >&2 && apt-get install -y -q --no-install-recommends gpg gpgv gpg-agent >&2; }
fi
if missing; then
	log "error: GnuPG is needed to sign and verify the release's SHA256SUMS: install gpg, gpgv and gpg-agent (Debian and Ubuntu: apt-get install gpg gpgv gpg-agent; macOS: brew install gnupg)"
	exit 1
fi
