#!/usr/bin/env bash
# `make image-check`: builds the image and smoke-tests it without running a
# container (this sandbox's OCI runtime cannot set rlimits, so `podman run`
# fails): the image is `podman image mount`ed and its binary run under
# chroot as the image's user (10001), in a private mount namespace.
#
#  1. the runtime image (what `make image` tags): its labels, user,
#     entrypoint and command; `portvakt --help` as uid 10001;
#  2. the runtime image with SoftHSM2 layered on top
#     (deploy/container/softhsm.Containerfile), as a vendor's module is: a SoftHSM2 token, a key and a
#     development eSeal made inside the chroot by the image's own binary,
#     then the image's own CMD with --check, with every shell in the image
#     hidden (nothing may need /bin/sh).
#
# The image is read-only; the configuration, the state and /tmp are host
# directories bind-mounted over /etc/portvakt, /var/lib/portvakt, /run/portvakt,
# /var/log/portvakt and /tmp, as a deployment would mount them. Everything
# (mounts, images, temporary files) is removed at the end; the base tarball
# and the Go build cache are kept (in /var/cache/portvakt-image), so a second
# run is fast; the builds keep no intermediate images (IMAGE_LAYERS=false).
# The scripts given to in_image are single-quoted on purpose: they expand in it.
# shellcheck disable=SC2016
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

image=localhost/portvakt:check
checkimage=localhost/portvakt-softhsm:check
work=$(mktemp -d /tmp/portvakt-image-check.XXXXXX)
mounted=()
cleanup() {
	for i in "${mounted[@]}"; do podman image unmount "$i" >/dev/null 2>&1 || true; done
	podman image rm -f "$checkimage" "$image" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

step "Building the image (scripts/image.sh) and its SoftHSM2 test layer"
IMAGE=$image IMAGE_LAYERS=false scripts/image.sh
podman build --isolation=chroot --layers=false --quiet --build-arg IMAGE="$image" \
	--file deploy/container/softhsm.Containerfile --tag "$checkimage" deploy/container >/dev/null
echo "$checkimage"

step "Labels, user, entrypoint and command"
fail=0
label() { podman image inspect "$image" --format "{{index .Config.Labels \"org.opencontainers.image.$1\"}}"; }
for l in title version revision source licenses created; do
	v=$(label "$l")
	printf '  org.opencontainers.image.%s=%s\n' "$l" "$v"
	case $v in "" | "<no value>" | unknown) echo "  label $l is missing" >&2; fail=1 ;; esac
done
[ "$(label revision)" = "$(git rev-parse HEAD)" ] || { echo "  revision is not HEAD" >&2; fail=1; }
user=$(podman image inspect "$image" --format '{{.Config.User}}')
entrypoint=$(podman image inspect "$image" --format '{{json .Config.Entrypoint}}')
cmd=$(podman image inspect "$image" --format '{{json .Config.Cmd}}')
printf '  user %s, entrypoint %s, cmd %s\n' "$user" "$entrypoint" "$cmd"
[ "$user" = 10001:10001 ] || { echo "  the image must run as 10001:10001" >&2; fail=1; }
[ "$entrypoint" = '["/usr/local/bin/portvakt"]' ] || { echo "  unexpected entrypoint" >&2; fail=1; }
[ "$cmd" = '["serve","--config","/etc/portvakt/portvakt.yaml"]' ] || { echo "  unexpected cmd" >&2; fail=1; }
[ $fail = 0 ]

root=$(podman image mount "$image")
mounted+=("$image")
checkroot=$(podman image mount "$checkimage")
mounted+=("$checkimage")

# No PKCS#11 module in the production image: SoftHSM2 is the test layer's.
if find "$root/usr/lib" -name 'libsofthsm2.so*' | grep -q .; then
	echo "the runtime image contains SoftHSM2; it must not" >&2
	exit 1
fi

# in_image ROOT SCRIPT: runs SCRIPT (bash, on the host) in a private mount
# namespace in which ROOT has the work directories mounted; SCRIPT calls
# `as_portvakt ARGS...` to run the image's portvakt as 10001:10001 under
# chroot ROOT, and `hide_shells` to hide every shell in the image.
in_image() {
	unshare --mount --propagation private env ROOT="$1" WORK="$work" bash -euo pipefail -c '
		mount --bind "$WORK/etc" "$ROOT/etc/portvakt"
		mount --bind "$WORK/state" "$ROOT/var/lib/portvakt"
		mount --bind "$WORK/log" "$ROOT/var/log/portvakt"
		mount --bind "$WORK/run" "$ROOT/run/portvakt"
		mount -t tmpfs -o mode=1777,size=16m tmpfs "$ROOT/tmp"
		mount --bind /dev "$ROOT/dev"
		mount -t proc proc "$ROOT/proc"
		as_portvakt() {
			chroot --userspec=10001:10001 "$ROOT" /usr/bin/env -i HOME=/var/lib/portvakt PATH=/usr/local/bin:/usr/bin \
				/usr/local/bin/portvakt "$@"
		}
		hide_shells() {
			: >"$WORK/no-shell"
			for sh in sh dash bash rbash; do
				[ -e "$ROOT/usr/bin/$sh" ] || continue
				mount --bind "$WORK/no-shell" "$ROOT/usr/bin/$sh"
				echo "  hidden: /usr/bin/$sh"
			done
		}
		'"$2"
}

mkdir -p "$work/etc" "$work/state" "$work/log" "$work/run"
chown 10001:10001 "$work/state" "$work/log" "$work/run"
chmod 0755 "$work" "$work/etc"

step "The runtime image: portvakt --help as uid 10001"
in_image "$root" '
	as_portvakt --help | sed -n "1p"
	as_portvakt version
	as_portvakt version | grep -qx "revision: '"$(git rev-parse HEAD)"'.*" || { echo "portvakt version does not name this revision" >&2; exit 1; }
	id=$(chroot --userspec=10001:10001 "$ROOT" /usr/bin/id -u)
	[ "$id" = 10001 ] || { echo "not uid 10001: $id" >&2; exit 1; }
'

step "The SoftHSM2 layer: a token, a key and a development eSeal, made in the image as uid 10001"
in_image "$checkroot" '
	tok=(--softhsm-dir /var/lib/portvakt/hsm --token portvakt-check --pin-file /var/lib/portvakt/user.pin)
	as_portvakt hsm init "${tok[@]}" --so-pin-file /var/lib/portvakt/so.pin --create-pins >/dev/null
	as_portvakt hsm keygen "${tok[@]}" --label eseal >/dev/null
	as_portvakt hsm keygen "${tok[@]}" --label portvakt-audit --bits 2048 >/dev/null
	as_portvakt hsm csr "${tok[@]}" --label eseal --org-number 991825827 --organization "Image Check AS" --out /var/lib/portvakt/eseal.csr >/dev/null
	as_portvakt devca init --dir /var/lib/portvakt/devca --name "Portvakt Image Check" >/dev/null
	as_portvakt devca issue --dir /var/lib/portvakt/devca --csr /var/lib/portvakt/eseal.csr --out /var/lib/portvakt/eseal-chain.pem >/dev/null
	as_portvakt hsm import-cert "${tok[@]}" --label eseal --cert /var/lib/portvakt/eseal-chain.pem >/dev/null
	as_portvakt hsm list "${tok[@]}"
'

# A local Maskinporten on the host (the chroot shares its network), so that
# the check reaches a real token endpoint through discovery, as a deployment
# reaches Maskinporten; this machine cannot reach the real one.
step "A local Maskinporten (maskinporten-sim, on the host) for the check to reach"
go build -o "$work/maskinporten-sim" ./cmd/maskinporten-sim
cat >"$work/maskinporten-sim.yaml" <<YAML
trust_roots: [$work/state/devca/root.pem]
clients:
  - {client_id: image-check, org_number: "991825827", scopes: [svv:kjoretoy/ecoc]}
YAML
"$work/maskinporten-sim" --config "$work/maskinporten-sim.yaml" >"$work/sim.out" 2>"$work/sim.log" &
sim=$!
trap 'kill $sim 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 100); do grep -q listening "$work/sim.out" && break; sleep 0.1; done
issuer=$(sed -n 's/.*(issuer \(.*\))$/\1/p' "$work/sim.out")
[ -n "$issuer" ] || { echo "maskinporten-sim did not start:" >&2; cat "$work/sim.log" >&2; exit 1; }
echo "issuer $issuer"

# The configuration is root'\''s and read-only to the daemon, as deployed.
cat >"$work/etc/portvakt.yaml" <<YAML
listen:
  unix: {path: /run/portvakt/portvakt.sock}
hsm:
  module: /usr/lib/softhsm/libsofthsm2.so
  softhsm_dir: /var/lib/portvakt/hsm
  token: portvakt-check
  pin: {file: /var/lib/portvakt/user.pin}
environments:
  - name: test
    issuer: $issuer
    discovery: true
    client_id: image-check
    key_label: eseal
policy: policy.yaml
audit: {file: /var/log/portvakt/audit.log, seal: {key_label: portvakt-audit}}
log: {format: json}
YAML
cat >"$work/etc/policy.yaml" <<'YAML'
clients:
  - name: check
    identities: [uid:10001]
    rules:
      - environments: [test]
        scopes: [svv:kjoretoy/ecoc]
YAML

step "The image's command with --check, as uid 10001, with no shell in the image"
# The command is the image's own (ENTRYPOINT + CMD), plus --check.
args=$(podman image inspect "$checkimage" --format '{{range .Config.Cmd}}{{printf "%q " .}}{{end}}')
in_image "$checkroot" "
	hide_shells
	if chroot \"\$ROOT\" /bin/sh -c true 2>/dev/null; then echo 'a shell still runs' >&2; exit 1; fi
	as_portvakt $args --check
"
printf '\nimage-check: ok (%s)\n' "$(podman image inspect "$image" --format '{{index .Config.Labels "org.opencontainers.image.version"}}')"
