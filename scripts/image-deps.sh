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
	"$(dirname "$0")/apt-install.sh" "${missing[@]}"
fi
