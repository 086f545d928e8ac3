#!/usr/bin/env bash
# apt-install.sh PACKAGE...: installs the Debian/Ubuntu packages given, the
# one way every script here installs what it misses. Without root or
# apt-get it says what to install and fails.
set -euo pipefail
[ $# -gt 0 ] || exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
	echo "missing: $*" >&2
	echo "install them, e.g.: sudo apt-get install -y $*" >&2
	exit 1
fi
echo "installing $* with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
