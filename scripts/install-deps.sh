#!/usr/bin/env bash
# Installs what Portvakt's tests and demo need on Debian or Ubuntu:
# SoftHSM2 (the development HSM), OpenSC's pkcs11-tool (an independent
# PKCS#11 client the tests check with) and openssl (an independent verifier).
set -euo pipefail

missing=()
have_softhsm=false
for lib in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so; do
	[ -e "$lib" ] && have_softhsm=true
done
$have_softhsm || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null || missing+=(opensc)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
	echo "missing: ${missing[*]}" >&2
	echo "install them, e.g.: sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
