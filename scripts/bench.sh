#!/bin/sh
# make bench: the flash engine against bmaptool and dd on a generated
# image (a table with ratios), then the Go benchmarks (registration through
# the recording proxy, ...). Measurements, not tests.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
$GO build -o bin/flashstation ./cmd/flashstation
echo "== flash engine vs bmaptool and dd"
$GO run ./internal/flashbench -bin bin/flashstation "$@"
echo
echo "== Go benchmarks"
$GO test -run '^$' -bench . -benchtime 2s ./...
