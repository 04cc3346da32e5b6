# EGW — build, test, demo, bench, install.
# `make demo` and `make test` are what a new user runs on a fresh Debian machine (see README).

GO      ?= go
BIN     := bin
PKGS    := $(shell $(GO) list ./... 2>/dev/null | grep -v /netns-tests)
GOFLAGS ?=

.PHONY: all build test unit-test netns-test bench demo install clean deps vet fmt-check fuzz

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/cloudgateway ./cmd/edgegateway ./cmd/egwctl
	@if [ -d netns-tests/responder ]; then $(GO) build -o $(BIN)/egw-responder ./netns-tests/responder; fi
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
	$(GO) test -tags netns -count=1 -timeout 30m -v ./netns-tests/...

bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem ./nat/... ./policy/... ./vpresence/... ./dnsd/...
	@if [ -d bench/cmd/egwbench ]; then $(GO) run ./bench/cmd/egwbench -bin $(BIN); fi

demo: deps build
	./scripts/demo.sh

install: build
	./scripts/install.sh

fuzz:
	@for t in $$($(GO) test -list 'Fuzz.*' ./api/ | grep ^Fuzz); do $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime 60s ./api/; done

clean:
	rm -rf $(BIN)
	$(GO) clean -testcache
