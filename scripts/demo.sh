#!/usr/bin/env bash
# `make demo`: the key's life on a throwaway SoftHSM2 token, end to end.
# Everything lives under the state directory given as $1 and is made anew
# on each run; nothing touches the machine's own SoftHSM2 tokens.
set -euo pipefail

state=${1:-.state/demo}
portvakt=${PORTVAKT:-bin/portvakt}
org=991825827 # Digdir's organisation number: valid check digit

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }

module=""
for lib in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so; do
	[ -e "$lib" ] && module=$lib && break
done

rm -rf "$state"
mkdir -p "$state"
tok=(--softhsm-dir "$state/hsm" --token portvakt-demo --pin-file "$state/user.pin")

step "1. A SoftHSM2 token in $state/hsm, with random PINs in files (mode 0600)"
run "$portvakt" hsm init "${tok[@]}" --so-pin-file "$state/so.pin" --create-pins

step "2. An RSA key generated inside the token: sensitive, never extractable, sign only"
run "$portvakt" hsm keygen "${tok[@]}" --label eseal

step "3. A certificate request signed by the HSM key, as Buypass or Commfides ask for it"
run "$portvakt" hsm csr "${tok[@]}" --label eseal --org-number "$org" --organization "Demo AS" --out "$state/eseal.csr"
openssl req -in "$state/eseal.csr" -noout -subject -verify 2>&1 | sed 's/^/  /'

step "4. A development CA issues the eSeal (the real CAs do this in production)"
run "$portvakt" devca init --dir "$state/devca" --name "Portvakt Demo"
run "$portvakt" devca issue --dir "$state/devca" --csr "$state/eseal.csr" --out "$state/eseal-chain.pem"

step "5. The certificate and its chain are stored beside the key"
run "$portvakt" hsm import-cert "${tok[@]}" --label eseal --cert "$state/eseal-chain.pem"
run "$portvakt" hsm list "${tok[@]}"

step "6. What an independent PKCS#11 client (OpenSC) sees of the key"
SOFTHSM2_CONF="$state/hsm/softhsm2.conf" pkcs11-tool --module "$module" \
	--token-label portvakt-demo --login --pin "$(cat "$state/user.pin")" --list-objects --type privkey 2>/dev/null | sed 's/^/  /'

step "7. The daemon's view: the key opened, matched to its certificate, signing in the HSM"
run "$portvakt" hsm check "${tok[@]}" --label eseal

step "8. A wrong PIN gets a clear error, and the PIN appears nowhere"
echo "wrong-pin" >"$state/wrong.pin"
if "$portvakt" hsm list --softhsm-dir "$state/hsm" --token portvakt-demo --pin-file "$state/wrong.pin"; then
	echo "a wrong PIN was accepted" >&2
	exit 1
fi

printf '\nDemo state is in %s. Tokens from Maskinporten come with the daemon (gRPC) next.\n' "$state"
