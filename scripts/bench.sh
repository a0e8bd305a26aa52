#!/bin/sh
# make bench: `flashstation flash` against `bmaptool copy` on a generated
# image (a markdown table: regular files, direct-io loop devices and, as
# root with the io/blkio cgroup controller, 25 MB/s throttled ones; cold
# and warm; ratios per round of alternating runs), then the Go benchmarks
# (registration through the recording proxy, ...). Measurements, not
# tests. Arguments go to flashbench: e.g. scripts/bench.sh -size 256MiB
# -runs 1, or -json FILE for the raw numbers.
# FLASHSTATION_SCALE=1 adds the factory ledger at scale (ledger/
# factory_scale_bench_test.go: 10,000,000 units generated once, about 25
# minutes and 30 GB under /var/tmp/flashstation-scale).
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
$GO build -o bin/flashstation ./cmd/flashstation
echo "== flashstation flash vs bmaptool copy"
$GO run ./internal/flashbench -bin bin/flashstation "$@"
echo
echo "== Go benchmarks"
$GO test -run '^$' -bench . -benchtime 2s -timeout 3h ./...
