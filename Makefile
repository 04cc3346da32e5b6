# EGW — build, test, demo, bench, install.
# `make demo` and `make test` are what a new user runs on a fresh Debian machine (see README).

GO      ?= go
BIN     := bin
PKGS    := $(shell $(GO) list ./... 2>/dev/null | grep -v /netns-tests)
GOFLAGS ?=

.PHONY: all build test unit-test netns-test bench bench-scale demo install clean deps vet fmt-check fuzz

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/cloudgateway ./cmd/edgegateway ./cmd/egwctl
	$(GO) build -o $(BIN)/responder ./netns-tests/responder
	$(GO) build -o $(BIN)/wireguard-go golang.zx2c4.com/wireguard

# deps installs what the tests, demo and bench need (iproute2, iperf3, wireguard-tools, ...)
# through the project's own script. It needs root and does nothing when all is present.
deps:
	@if [ "$$(id -u)" = 0 ]; then ./scripts/install-deps.sh; else echo "deps: not root, skipping package install"; fi

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# test: vet + gofmt, unit tests with the race detector, then the end-to-end suite in network
# namespaces (needs root; skipped with a message otherwise).
test: vet unit-test netns-test

unit-test:
	$(GO) test -race -count=1 $(PKGS)

netns-test: deps build
	@if [ "$$(id -u)" != 0 ]; then echo "netns-test: needs root, skipped"; exit 0; fi; \
	EGW_BIN=$(CURDIR)/$(BIN) $(GO) test -tags netns -count=1 -timeout 30m -v ./netns-tests/... && \
	./scripts/test-install.sh

# bench: one driver, bench/cmd/egwbench, runs everything into one report: the translate +
# ACL micro-benchmarks (nat, policy), dnsd's loopback load, the control plane at scale
# (bench/cpscale), the end-to-end paths in namespaces beside a plain wireguard-go tunnel, and
# the edge's RSS with 10,000 leases. Needs root. The last line printed is the JSON report.
bench: deps build
	$(GO) build -o $(BIN)/egwbench ./bench/cmd/egwbench
	./$(BIN)/egwbench -bin $(CURDIR)/$(BIN)

# bench-scale: the control plane at 10,000 gateways × 10 services × 5 sites (240,000
# objects, 500,000 VIPs) alone, in-process, no root: apply time, policy change cost, peak
# RSS, startup. Takes a few minutes; the report goes to stdout and the JSON to
# $(SCALE_JSON).
SCALE_JSON ?= /tmp/egw-bench-scale.json
bench-scale:
	$(GO) run ./bench/cpscale -gateways 100 -scale-gateways 10000 -scale-changes 9 -json $(SCALE_JSON)

demo: deps build
	./scripts/demo.sh

install: build
	./scripts/install.sh

# fuzz runs every fuzz target for FUZZTIME each.
FUZZTIME ?= 60s
fuzz:
	@for p in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list 'Fuzz.*' $$p 2>/dev/null | grep ^Fuzz); do \
	    echo "== $$p $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -parallel 1 $$p || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN)
	$(GO) clean -testcache
