#!/usr/bin/env bash
# Installs what Portvakt's tests and demo need on Debian or Ubuntu:
# SoftHSM2 (the development HSM), OpenSC's pkcs11-tool (an independent
# PKCS#11 client the tests check with), openssl (an independent verifier) and
# p11-kit: its `p11-kit server` and client module (p11-kit-client.so, in
# p11-kit-modules) serve a SoftHSM2 token over a socket as the tests' stand-in
# for a network HSM (internal/p11kittest); and opencryptoki, the second
# PKCS#11 implementation the HSM tests run on (PORTVAKT_TEST_HSM=opencryptoki),
# whose slot daemon pkcsslotd it starts when it is not running.
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
[ -x /usr/sbin/pkcsslotd ] || missing+=(opencryptoki)

if [ ${#missing[@]} -gt 0 ]; then
	"$(dirname "$0")/apt-install.sh" "${missing[@]}"
fi

# opencryptoki's library needs its slot daemon. Where nothing starts it (no
# systemd, or a container's policy-rc.d), start it here; the tests would
# too (softhsm/softhsmtest), but as root only.
pid=$(cat /var/run/pkcsslotd.pid 2>/dev/null || true)
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null || [ ! -S /var/run/pkcsslotd.socket ]; then
	if [ "$(id -u)" -ne 0 ]; then
		# Only the tests on opencryptoki need it; the demo and the SoftHSM2
		# tests do not, so this is no reason to stop.
		echo "note: opencryptoki's pkcsslotd is not running; the tests on opencryptoki need it: sudo /usr/sbin/pkcsslotd" >&2
		exit 0
	fi
	# Detached from this script's output and from every other descriptor it
	# inherited, so that nothing waits on a pipe the daemon would hold.
	(
		for fd in /proc/self/fd/*; do
			fd=${fd##*/}
			if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
		done
		exec /usr/sbin/pkcsslotd </dev/null >/dev/null 2>&1
	)
fi
