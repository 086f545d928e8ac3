#!/usr/bin/env bash
# Makes the base image every stage of deploy/container/Containerfile starts
# from, without an image registry: a Debian/Ubuntu minbase root filesystem
# made by mmdebstrap from the distribution's own mirror, then `podman import`ed
# as localhost/portvakt-base:$SUITE. Prints that name.
#
# The suite is this machine's own release (VERSION_CODENAME), so its mirror
# and apt keys work; override with IMAGE_SUITE (and IMAGE_MIRROR). The tarball
# is cached outside the repository, keyed by suite and architecture, in
# IMAGE_CACHE (default /var/cache/portvakt-image); delete it to make it anew
# (a later security update then comes in).
set -euo pipefail

# shellcheck source=/dev/null
. /etc/os-release
suite=${IMAGE_SUITE:-${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release: set IMAGE_SUITE}}
arch=$(dpkg --print-architecture)
cache=${IMAGE_CACHE:-/var/cache/portvakt-image}
tarball=$cache/base-$suite-$arch.tar
image=localhost/portvakt-base:$suite

case ${ID:-debian} in
ubuntu)
	mirror=${IMAGE_MIRROR:-http://archive.ubuntu.com/ubuntu}
	[ "$arch" = amd64 ] || [ "$arch" = i386 ] || mirror=${IMAGE_MIRROR:-http://ports.ubuntu.com/ubuntu-ports}
	# SoftHSM2 (the smoke test's layer) is in universe.
	components=main,universe
	;;
*)
	mirror=${IMAGE_MIRROR:-http://deb.debian.org/debian}
	components=main
	;;
esac

if [ ! -s "$tarball" ]; then
	mkdir -p "$cache"
	echo "making $tarball with mmdebstrap (minbase $suite from $mirror)" >&2
	# Documentation, manual pages and translations are left out: nothing
	# reads them in a container, and they are a third of minbase.
	mmdebstrap --quiet --format=tar --variant=minbase --components="$components" \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/zoneinfo/right/*' \
		"$suite" "$tarball.tmp" "$mirror" >&2
	mv "$tarball.tmp" "$tarball"
	# A new tarball: the image imported from an older one is stale.
	podman image rm -f "$image" >/dev/null 2>&1 || true
fi

if ! podman image exists "$image"; then
	echo "importing $tarball as $image" >&2
	podman import --quiet \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		"$tarball" "$image" >/dev/null
fi
echo "$image"
