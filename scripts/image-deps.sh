#!/usr/bin/env bash
# Installs what `make image` and `make image-check` need on Debian or Ubuntu:
# podman (builds with --isolation=chroot: no daemon, no OCI runtime needed),
# mmdebstrap (makes the base image from the distribution's packages: no image
# registry is needed), and util-linux's unshare/chroot (always there).
set -euo pipefail

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
# podman's overlay storage on filesystems without native overlay support.
command -v fuse-overlayfs >/dev/null || missing+=(fuse-overlayfs)

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
		echo "missing: ${missing[*]}" >&2
		echo "install them, e.g.: sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	echo "installing ${missing[*]} with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
