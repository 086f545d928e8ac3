#!/usr/bin/env bash
# Installs what Portvakt's tests and demo need on Debian or Ubuntu:
# SoftHSM2 (the development HSM), OpenSC's pkcs11-tool (an independent
# PKCS#11 client the tests check with), openssl (an independent verifier) and
# p11-kit: its `p11-kit server` and client module (p11-kit-client.so, in
# p11-kit-modules) serve a SoftHSM2 token over a socket as the tests' stand-in
# for a network HSM (internal/p11kittest).
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
command -v p11-kit >/dev/null || missing+=(p11-kit)
have_p11kit_client=false
for lib in /usr/lib/*-linux-gnu/pkcs11/p11-kit-client.so /usr/lib64/pkcs11/p11-kit-client.so /usr/lib/pkcs11/p11-kit-client.so; do
	[ -e "$lib" ] && have_p11kit_client=true
done
$have_p11kit_client || missing+=(p11-kit-modules)

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
