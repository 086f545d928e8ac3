#!/usr/bin/env bash
# Generates the Go code of the gRPC API (proto/**/*.pb.go, checked in) with
# the tools pinned in tools/go.mod: formats and lints the .proto files with
# buf, then runs buf generate with the local protoc-gen-go and
# protoc-gen-go-grpc. Runs from any directory; needs only Go and the Go
# module proxy. A cold first run builds buf from source (a few minutes);
# later runs reuse Go's build cache.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

GO="${GO:-go}"
modfile="tools/go.mod"
# -modfile does not mix with a go.work a developer may have above the repo.
export GOWORK=off

# protoc-gen-go must be the version of the protobuf runtime the root module
# builds against: generated code checks the runtime version it runs with.
runtime="$("$GO" list -m -f '{{.Version}}' google.golang.org/protobuf)"
plugin="$("$GO" list -modfile="$modfile" -m -f '{{.Version}}' google.golang.org/protobuf)"
if [[ "$runtime" != "$plugin" ]]; then
	echo "generate: protoc-gen-go in $modfile is $plugin but go.mod requires google.golang.org/protobuf $runtime;" >&2
	echo "generate: pin the same version in both: (cd tools && $GO get -tool google.golang.org/protobuf/cmd/protoc-gen-go@$runtime)" >&2
	exit 1
fi

bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT

echo "generate: building the pinned tools (see $modfile)" >&2
"$GO" build -modfile="$modfile" -o "$bin/" \
	github.com/bufbuild/buf/cmd/buf \
	google.golang.org/protobuf/cmd/protoc-gen-go \
	google.golang.org/grpc/cmd/protoc-gen-go-grpc

# buf.gen.yaml names the plugins as local binaries: these, and no others.
export PATH="$bin:$PATH"
echo "generate: buf $(buf --version), $(protoc-gen-go --version), $(protoc-gen-go-grpc --version)" >&2

buf format --write
buf lint
buf generate
echo "generate: done" >&2
