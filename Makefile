# flashstation: build, test and demo. `make demo` and `make test` are the
# README's quick start; both install what they need first (make deps).

GO      ?= go
BIN     ?= bin/flashstation
PKGS    ?= ./...
TIMEOUT ?= 15m
GOBIN   := $(shell $(GO) env GOPATH)/bin
# The linter, pinned; make deps installs it through the Go toolchain.
STATICCHECK_VERSION ?= 0.8.2
STATICCHECK ?= $(GOBIN)/staticcheck

.PHONY: all deps tools build test vet demo bench lint fmt clean qemu-assets qemu-test

all: build

# Debian packages the build and tests need (libusb for gousb; bmap-tools,
# fastboot, zstd, xz-utils as real peers; QEMU, U-Boot and the disk tools
# for the QEMU bench), and Debian's armhf kernel for the QEMU boards
# (fetched into the Go build cache once). Installs as root, else prints
# the apt-get command.
deps:
	@scripts/deps.sh
	@scripts/qemu-kernel.sh >/dev/null || echo "deps: no armhf kernel for the QEMU bench (scripts/qemu-kernel.sh failed): its tests skip" >&2

# The Go tools the lint needs, installed through the Go toolchain.
tools:
	@if ! "$(STATICCHECK)" -version 2>/dev/null | grep -qF "($(STATICCHECK_VERSION))"; then \
		echo "deps: go install honnef.co/go/tools/cmd/staticcheck@v$(STATICCHECK_VERSION)" >&2; \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@v$(STATICCHECK_VERSION); fi

build: deps
	$(GO) build -o $(BIN) ./cmd/flashstation

vet:
	$(GO) vet $(PKGS)

# Every test: lint (gofmt, vet, staticcheck; any finding fails), then the
# race-enabled unit and integration tests, the command-line scripts and the
# end-to-end tests on simulated boards.
test: deps lint
	FLASHSTATION_REQUIRE_POSTGRES=1 $(GO) test -race -timeout $(TIMEOUT) $(PKGS)

# The station on a simulated bench (DEMO_ARGS: e.g. --faults --boards 16).
demo: build
	$(BIN) demo $(DEMO_ARGS)

# The armhf QEMU board's kernel (Debian's armmp vmlinuz and virtio
# modules, fetched into the build cache), then its boot tests:
# internal/armimage boots the built image under qemu-system-arm.
qemu-assets: deps
	@scripts/qemu-kernel.sh >/dev/null

qemu-test: qemu-assets
	$(GO) test -timeout $(TIMEOUT) -v -run 'QEMU|Build' ./internal/armimage/...

# Performance benchmarks (never timed assertions in tests): flashstation
# flash against bmaptool copy (internal/flashbench; BENCH_ARGS: e.g.
# -size 256MiB -runs 1 -json bench.json), then the Go benchmarks.
bench: deps
	GO=$(GO) scripts/bench.sh $(BENCH_ARGS)

lint: tools vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(STATICCHECK) $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
