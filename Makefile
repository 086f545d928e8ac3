# Portvakt. `make demo` runs the whole flow on a throwaway SoftHSM2 token;
# `make test` runs the tests. Both install what they need on Debian/Ubuntu.

GO      ?= go
FUZZTIME ?= 30s
BIN     := bin
STATE   := .state
# The packages whose tests run on opencryptoki too (softhsm/softhsmtest).
HSM_TESTS := ./signer/... ./hsm/... ./cmd/portvakt/...

.PHONY: all build test bench bench-e2e fuzz demo generate check-generated lint deps clean systemd-check helm-check

all: build

# The version and commit `portvakt version` prints, portvakt_build_info
# exports and the daemon logs at start. Outside a git checkout: "dev", and
# the commit Go recorded, if any.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git describe --always --dirty --abbrev=40 --match=NONE 2>/dev/null)
BUILDINFO := github.com/portvakt/portvakt/internal/buildinfo
LDFLAGS  := -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).revision=$(REVISION)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

## deps: install SoftHSM2, opencryptoki, OpenSC (pkcs11-tool), openssl and p11-kit when missing.
deps:
	@scripts/install-deps.sh

## test: vet, then every test with the race detector, against real SoftHSM2;
## then the HSM tests again against opencryptoki's soft token.
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	PORTVAKT_TEST_HSM=opencryptoki $(GO) test -race -count=1 $(HSM_TESTS)

## bench: benchmarks, to be read as ratios within one run (in-process; the
## daemon as a process, under load, is `make bench-e2e`).
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./...

## bench-e2e: the daemon as a process (built without -race) on a fresh SoftHSM2
## token, the simulator, and bench/e2e's load client: a table of ratios against
## the no-op RPC and bare HSM signatures, each with its target. About two
## minutes; a quick look: make bench-e2e BENCH_E2E_FLAGS='-round 1s -rounds 1'.
## `go run ./bench/e2e -h` lists the flags.
BENCH_E2E_FLAGS ?=
bench-e2e: deps build
	$(GO) run ./bench/e2e -portvakt $(BIN)/portvakt $(BENCH_E2E_FLAGS)

## fuzz: a short run of every fuzz target (their seed corpora run in `make test`).
fuzz:
	@# Every FuzzXxx in the module, each for $(FUZZTIME): a new parser's fuzz
	@# target runs without being listed here.
	@for f in $$(git ls-files '*_test.go' | xargs grep -l '^func Fuzz'); do \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "$(GO) test -fuzz $$name ./$$(dirname $$f)"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$(dirname $$f) || exit 1; \
		done; \
	done

## demo: the whole flow: an HSM-held eSeal, a local Maskinporten, the daemon, tokens, the audit.
demo: deps build
	@scripts/demo.sh $(STATE)/demo

## generate: the gRPC API's Go code (proto/**/*.pb.go, checked in), with the tools pinned in tools/go.mod.
generate:
	@GO="$(GO)" scripts/generate.sh

## check-generated: fail when the checked-in generated code is stale (CI runs it).
check-generated:
	@GO="$(GO)" scripts/check-generated.sh

## lint: formatting, vet and a tidy go.mod.
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	scripts/check-tracked.sh

## systemd-check: systemd-analyze verify (and security) on deploy/systemd's unit, and its
## sysusers.d and tmpfiles.d snippets applied to a temporary root (CI runs it; needs systemd).
systemd-check:
	@GO="$(GO)" scripts/systemd-check.sh

## helm-check: helm lint of the chart with each value set in its ci/, then the chart's
## tests (deploy/helm/charttest, a module of its own): every rendered object decoded
## strictly into its Kubernetes type. Installs helm with `go install` when missing.
HELM_VERSION := v3.22.0
HELM = $(shell command -v helm 2>/dev/null || echo "$$($(GO) env GOPATH)/bin/helm")
CHART := deploy/helm/portvakt
helm-check:
	@test -x "$(HELM)" || { echo "installing helm $(HELM_VERSION) (go install)"; $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); }
	@for f in $(CHART)/ci/*.yaml; do echo "helm lint --strict $(CHART) -f $$f"; "$(HELM)" lint --strict --quiet $(CHART) -f $$f || exit 1; done
	cd deploy/helm/charttest && $(GO) mod tidy -diff && $(GO) vet ./... && HELM="$(HELM)" $(GO) test -count=1 ./...

## image: the container image (deploy/container/Containerfile), built with podman
## on a Debian minbase made by mmdebstrap; installs podman and mmdebstrap when missing.
.PHONY: image image-check
image:
	@GO="$(GO)" scripts/image.sh

## image-check: build the image and smoke-test it, mounted and run under chroot as
## uid 10001, against a SoftHSM2 token (CI runs it).
image-check:
	@GO="$(GO)" scripts/image-check.sh

clean:
	rm -rf $(BIN) $(STATE)
