# flashstation: build, test and demo. `make demo` and `make test` are the
# README's quick start; both install what they need first (make deps).

GO      ?= go
BIN     ?= bin/flashstation
PKGS    ?= ./...
TIMEOUT ?= 15m

.PHONY: all deps build test vet demo bench lint fmt clean

all: build

# Debian packages the build and tests need (libusb for gousb; bmap-tools,
# fastboot, zstd, xz-utils as real peers). Installs as root, else prints
# the apt-get command.
deps:
	@scripts/deps.sh

build: deps
	$(GO) build -o $(BIN) ./cmd/flashstation

vet:
	$(GO) vet $(PKGS)

# Every test: vet, the race-enabled unit and integration tests, the
# command-line scripts and (as they land) the end-to-end tests on simulated
# boards.
test: deps vet
	$(GO) test -race -timeout $(TIMEOUT) $(PKGS)

# The station on a simulated bench (DEMO_ARGS: e.g. --faults --boards 16).
demo: build
	$(BIN) demo $(DEMO_ARGS)

# Performance benchmarks (never timed assertions in tests): the flash engine
# against bmaptool and dd, then the Go benchmarks.
bench: deps
	GO=$(GO) scripts/bench.sh

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck $(PKGS); else echo "staticcheck not installed: skipped (go install honnef.co/go/tools/cmd/staticcheck@latest)"; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
