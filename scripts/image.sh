#!/usr/bin/env bash
# `make image`: builds Portvakt's container image from
# deploy/container/Containerfile with podman (--isolation=chroot: no daemon,
# no OCI runtime), on a base made from Debian's packages (scripts/image-base.sh).
#
#   IMAGE   the name to tag (default localhost/portvakt:$VERSION, and :latest)
#   IMAGE_LAYERS  false: keep no intermediate images (no layer cache;
#                 image-check uses it to leave nothing behind); default true
#
# Labels: version (git describe), revision (the commit), created (the
# commit's time, so that the same commit gives the same labels), source and
# licenses (IMAGE_SOURCE, IMAGE_LICENSES). Prints the image's name.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/image-deps.sh >&2
base=$(scripts/image-base.sh)

go=${GO:-go}
# The build stage uses this machine's Go (see the Containerfile): it must be
# the version go.mod names, with the modules in its cache.
want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)
have=$(GOTOOLCHAIN=local "$go" env GOVERSION)
if [ "$have" != "go$want" ]; then
	echo "image: go.mod asks for go$want, this machine's Go is $have" >&2
	exit 1
fi
goroot=$("$go" env GOROOT)
modcache=$("$go" env GOMODCACHE)
"$go" mod download
# The Go build cache of image builds, kept between runs (outside the repo).
gocache=${IMAGE_CACHE:-/var/cache/portvakt-image}/go-build
mkdir -p "$gocache"

version=$(git describe --tags --always --dirty 2>/dev/null || echo unknown)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
created=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
image=${IMAGE:-localhost/portvakt:$version}
tags=(--tag "$image")
[ -n "${IMAGE:-}" ] || tags+=(--tag localhost/portvakt:latest)

podman build --isolation=chroot --layers="${IMAGE_LAYERS:-true}" --quiet \
	--file deploy/container/Containerfile \
	--ignorefile deploy/container/Containerfile.ignore \
	--build-arg BASE="$base" \
	--build-arg VERSION="$version" \
	--build-arg REVISION="$revision" \
	--build-arg CREATED="$created" \
	--build-arg SOURCE="${IMAGE_SOURCE:-https://github.com/portvakt/portvakt}" \
	--build-arg LICENSES="${IMAGE_LICENSES:-NOASSERTION}" \
	--volume "$goroot:/usr/local/go:ro" \
	--volume "$modcache:/go/pkg/mod:ro" \
	--volume "$gocache:/root/.cache/go-build" \
	--target runtime \
	"${tags[@]}" \
	. >/dev/null
echo "$image"
