#!/usr/bin/env bash
# `make demo`: the whole flow on this machine, end to end. A SoftHSM2 token
# gets a key and an eSeal from a development CA; a local Maskinporten
# (maskinporten-sim) trusts that CA; the daemon serves tokens over its Unix
# socket and mutual TLS; a consumer token, a delegated token, an Altinn
# system user token and a denied request are shown; everything is stopped
# at the end.
#
# All state lives under the directory given as $1 (made anew each run);
# nothing touches the machine's own SoftHSM2 tokens.
set -euo pipefail

state=${1:-.state/demo}
bin=${BIN:-bin}
org=991825827      # the demo enterprise (Digdir's number: a valid check digit)
consumer=974760673 # an organisation that has delegated ecoc to the demo
customer=313775429 # a customer that has made a system user for the demo's system, in Altinn

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }

pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# wait_for CMD...: retry until it succeeds (10 s at most).
wait_for() {
	for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "gave up waiting for: $*" >&2
	return 1
}

rm -rf "$state"
mkdir -p "$state"
state=$(cd "$state" && pwd)
tok=(--softhsm-dir "$state/hsm" --token portvakt-demo --pin-file "$state/user.pin")

step "1. A SoftHSM2 token with random PINs, and an RSA key made inside it"
run "$bin/portvakt" hsm init "${tok[@]}" --so-pin-file "$state/so.pin" --create-pins
run "$bin/portvakt" hsm keygen "${tok[@]}" --label eseal
# A key of its own, never the eSeal, seals the audit log.
run "$bin/portvakt" hsm keygen "${tok[@]}" --label portvakt-audit --bits 2048

step "2. A certificate request signed in the HSM; a development CA issues the eSeal"
run "$bin/portvakt" hsm csr "${tok[@]}" --label eseal --org-number "$org" --organization "Demo AS" --out "$state/eseal.csr"
run "$bin/portvakt" devca init --dir "$state/devca" --name "Portvakt Demo"
run "$bin/portvakt" devca issue --dir "$state/devca" --csr "$state/eseal.csr" --out "$state/eseal-chain.pem"
run "$bin/portvakt" hsm import-cert "${tok[@]}" --label eseal --cert "$state/eseal-chain.pem"
run "$bin/portvakt" hsm list "${tok[@]}"

step "3. A local Maskinporten that trusts the development CA"
cat >"$state/maskinporten-sim.yaml" <<YAML
token_lifetime: 120s
trust_roots: [devca/root.pem]
clients:
  - client_id: portvakt-demo
    org_number: "$org"
    scopes: [svv:kjoretoy/ecoc, svv:kjoretoy/ecoc.delegert, svv:kjoretoy/leasingtaker]
delegations:
  - consumer_org: "$consumer"
    supplier_client_id: portvakt-demo
    scopes: [svv:kjoretoy/ecoc.delegert]
system_users:
  - client_id: portvakt-demo
    system_id: ${org}_portvakt-demo
    customer: "$customer"
    external_ref: demo-kunde-1
YAML
"$bin/maskinporten-sim" --config "$state/maskinporten-sim.yaml" >"$state/maskinporten-sim.out" 2>"$state/maskinporten-sim.log" &
pids+=($!)
wait_for grep -q listening "$state/maskinporten-sim.out"
issuer=$(sed -n 's/.*(issuer \(.*\))$/\1/p' "$state/maskinporten-sim.out")
echo "maskinporten-sim: issuer $issuer"

step "4. Mutual-TLS certificates for the daemon and one client (openssl)"
(
	cd "$state"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=Portvakt Demo mTLS CA" \
		-keyout mtls-ca-key.pem -out mtls-ca.pem 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=portvakt" -keyout server-key.pem -out server.csr 2>/dev/null
	openssl x509 -req -in server.csr -CA mtls-ca.pem -CAkey mtls-ca-key.pem -days 2 -out server.pem \
		-extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth') 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=billing" -keyout billing-key.pem -out billing.csr 2>/dev/null
	openssl x509 -req -in billing.csr -CA mtls-ca.pem -CAkey mtls-ca-key.pem -days 2 -out billing.pem \
		-extfile <(printf 'subjectAltName=URI:spiffe://portvakt.demo/ns/billing/sa/api\nextendedKeyUsage=clientAuth') 2>/dev/null
)
echo "client certificate: spiffe://portvakt.demo/ns/billing/sa/api"

step "5. The policy: who may ask for what"
cat >"$state/policy.yaml" <<YAML
clients:
  - name: billing
    identities:
      - spiffe://portvakt.demo/ns/billing/sa/api # the mTLS client
      - uid:$(id -u)                             # you, over the Unix socket
    rules:
      - environments: [demo]
        scopes: [svv:kjoretoy/ecoc]
      - environments: [demo]
        scopes: [svv:kjoretoy/ecoc.delegert]
        consumer_orgs: ["$consumer"]
      - environments: [demo]
        scopes: [svv:kjoretoy/ecoc]
        system_users: ["$customer"]
    rate_limit: {per_second: 20, burst: 40}
YAML
cat "$state/policy.yaml"
run "$bin/portvakt" policy check "$state/policy.yaml"

step "6. The daemon"
cat >"$state/portvakt.yaml" <<YAML
listen:
  unix: {path: portvakt.sock}
  tcp: {address: "127.0.0.1:0", cert_file: server.pem, key_file: server-key.pem, client_ca_file: mtls-ca.pem}
hsm:
  softhsm_dir: hsm
  token: portvakt-demo
  pin: {file: user.pin}
environments:
  - name: demo
    issuer: $issuer
    discovery: true
    client_id: portvakt-demo
    key_label: eseal
    default_resource: https://www.utv.vegvesen.no
policy: policy.yaml
audit: {file: audit/audit.log, seal: {key_label: portvakt-audit}}
metrics: {address: "127.0.0.1:0"}
log: {format: text}
YAML
cat "$state/portvakt.yaml"
"$bin/portvakt" serve --config "$state/portvakt.yaml" 2>"$state/portvakt.log" &
pids+=($!)
wait_for test -S "$state/portvakt.sock"
wait_for grep -q "listener=tcp" "$state/portvakt.log"
addr=$(sed -n 's/.*msg=listening listener=tcp address=\([^ ]*\).*/\1/p' "$state/portvakt.log")
export PORTVAKT_SOCKET="$state/portvakt.sock"
echo "portvakt: Unix socket $PORTVAKT_SOCKET, mutual TLS on $addr"
echo "The same configuration checked beside the running daemon: serve --check writes nothing."
run "$bin/portvakt" serve --config "$state/portvakt.yaml" --check

step "7. A consumer token, over the Unix socket (you are uid $(id -u))"
run "$bin/portvakt" token --env demo --scope svv:kjoretoy/ecoc

step "8. A delegated token, on behalf of $consumer, over mutual TLS"
run "$bin/portvakt" token --addr "$addr" --cert "$state/billing.pem" --key "$state/billing-key.pem" --ca "$state/mtls-ca.pem" \
	--env demo --scope svv:kjoretoy/ecoc.delegert --consumer-org "$consumer"

step "9. A system user token: on behalf of customer $customer, through its Altinn system user"
run "$bin/portvakt" token --env demo --scope svv:kjoretoy/ecoc --system-user "$customer" --system-user-ref demo-kunde-1

step "10. A request the policy denies"
if run "$bin/portvakt" token --env demo --scope svv:kjoretoy/leasingtaker; then
	echo "the policy let a denied request through" >&2
	exit 1
fi
run "$bin/portvakt" policy explain --policy "$state/policy.yaml" --identity "uid:$(id -u)" --env demo --scope svv:kjoretoy/leasingtaker || true

if command -v grpcurl >/dev/null; then
	step "grpcurl, through server reflection, with the client certificate"
	run grpcurl -cacert "$state/mtls-ca.pem" -cert "$state/billing.pem" -key "$state/billing-key.pem" "$addr" list
	run grpcurl -cacert "$state/mtls-ca.pem" -cert "$state/billing.pem" -key "$state/billing-key.pem" "$addr" portvakt.v1.TokenService/WhoAmI
	run grpcurl -plaintext -unix -d '{"service":"portvakt.v1.TokenService/demo"}' "$PORTVAKT_SOCKET" grpc.health.v1.Health/Check
fi

step "11. The audit: every decision and every use of the key, hash-chained"
run "$bin/portvakt" audit query "$state/audit" --kind signature
run "$bin/portvakt" audit verify "$state/audit"
metrics=$(sed -n 's/.*msg=listening listener=metrics address=\([^ ]*\).*/\1/p' "$state/portvakt.log")
echo "metrics on http://$metrics/metrics, for example:"
curl -s "http://$metrics/metrics" | grep -E '^portvakt_(requests_total|policy_denials_total|hsm_sign_seconds_count|hsm_up|certificate_not_after)' | sed 's/^/  /' || true

step "12. Stopping the daemon and the local Maskinporten"
cleanup
pids=()
echo "the daemon's log: $state/portvakt.log"
tail -n 4 "$state/portvakt.log" | sed 's/^/  /'

step "13. The audit, sealed: the daemon's checkpoints, checked with the audit key's public half"
run "$bin/portvakt" audit public-key "${tok[@]}" --label portvakt-audit --out "$state/audit-key.pem"
run "$bin/portvakt" audit verify --public-key "$state/audit-key.pem" "$state/audit"
printf '\nDemo state is in %s.\n' "$state"
