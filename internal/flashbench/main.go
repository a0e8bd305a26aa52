// Command flashbench measures `flashstation flash` side by side with
// `bmaptool copy` (Debian bmap-tools) on a generated Ubuntu-Core-like
// image, and prints a markdown table. It is run by `make bench`; it is a
// measurement, not a test.
//
// Targets are fresh regular files, fresh sparse files behind
// `losetup --direct-io=on` loop devices (root), and such loop devices
// throttled to 25 MB/s each way by a child cgroup per run (root with the
// cgroup v2 io or v1 blkio controller; verified by measuring, else
// flashstation's own --throttle and no bmaptool pair). Every case runs
// -runs rounds; each round runs flashstation (with read-back, its normal
// mode), flashstation --no-verify and bmaptool copy, in an order that
// alternates between rounds, and the ratios to bmaptool are taken per
// round; the table reports medians.
//
// Cold: a fresh empty --cache for flashstation (its first flash of the
// image) and the image's pages dropped from the page cache for both tools
// (posix_fadvise DONTNEED after fsync). Warm: flashstation's cache already
// filled, and the image and the cache read into the page cache first.
//
// Keep development runs small: -size 256MiB -runs 1 -cases cold,warm.
// -json FILE writes every run's numbers; -baseline FILE (an earlier -json,
// e.g. of today's engine) reports CPU per verified GiB against it. Loop
// devices and cgroups the bench made are removed at exit, also on error
// and on SIGINT/SIGTERM.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

const mib = 1 << 20

// imageSize is the generated image's size (-size).
var imageSize int64 = 1 << 30

// dataRanges place about a third of a 1 GiB image in random data, like an
// Ubuntu Core image's seed partition split over a few extents; other
// sizes scale them.
var dataRanges1G = [][2]int64{
	{0, 8 * mib}, {16 * mib, 100 * mib}, {300 * mib, 110 * mib}, {600 * mib, 100 * mib}, {1000 * mib, 23 * mib},
}

func dataRanges() [][2]int64 {
	var out [][2]int64
	for _, r := range dataRanges1G {
		off := r[0] * imageSize / (1 << 30) &^ 4095
		n := max(r[1]*imageSize/(1<<30)&^4095, 4096)
		out = append(out, [2]int64{off, n})
	}
	return out
}

func mappedBytes() int64 {
	n := int64(0)
	for _, r := range dataRanges() {
		n += r[1]
	}
	return n
}

type bench struct {
	env           *env
	dir           string
	bin           string
	runs          int
	throttledRuns int
	image, bmap   string
	warmCache     string
}

func main() {
	dir := flag.String("dir", filepath.Join(os.TempDir(), "flashstation-bench"), "work directory (the image is kept for later runs)")
	bin := flag.String("bin", "bin/flashstation", "flashstation binary")
	runs := flag.Int("runs", 5, "rounds per case (each round: flashstation, flashstation --no-verify, bmaptool copy, alternating order)")
	throttledRuns := flag.Int("throttled-runs", 1, "rounds for the throttled cases (each takes tens of seconds at 25 MB/s)")
	size := flag.String("size", "1GiB", "image size (e.g. 256MiB, 1GiB); the mapped share stays about a third")
	cases := flag.String("cases", "all", "comma-separated case ids: "+strings.Join(caseIDs, ","))
	jsonOut := flag.String("json", "", "write the raw per-run numbers to this file")
	throttle := flag.String("throttle", "auto", "how throttled targets are throttled: auto (a cgroup when it works, else flashstation's --throttle) or flashstation")
	baseline := flag.String("baseline", "", "a -json file of an earlier run: report CPU per verified GiB against it")
	flag.Parse()
	n, err := parseSize(*size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flashbench: -size:", err)
		os.Exit(2)
	}
	imageSize = n
	abs, err := filepath.Abs(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flashbench:", err)
		os.Exit(2)
	}
	b := &bench{dir: *dir, bin: abs, runs: max(*runs, 1), throttledRuns: max(*throttledRuns, 1)}
	b.env = newEnv(*dir)
	switch *throttle {
	case "auto":
	case "flashstation":
		b.env.noCgroup = true
	default:
		fmt.Fprintln(os.Stderr, "flashbench: -throttle: want auto or flashstation")
		os.Exit(2)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "flashbench: %v: cleaning up\n", s)
		b.env.cleanup()
		os.Exit(130)
	}()
	err = b.run(*cases, *jsonOut, *baseline)
	b.env.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flashbench:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"G", 1 << 30}, {"M", 1 << 20}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(num, 10, 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("%q: want e.g. 256MiB", s)
			}
			if v*u.mult < 64*mib {
				return 0, fmt.Errorf("%q: at least 64MiB", s)
			}
			return v * u.mult, nil
		}
	}
	return 0, fmt.Errorf("%q: want e.g. 256MiB or 1GiB", s)
}

func need(tool, pkg string) error {
	if _, err := exec.LookPath(tool); err != nil {
		return fmt.Errorf("%s not found: apt-get install %s", tool, pkg)
	}
	return nil
}

func (b *bench) run(caseList, jsonOut, baseline string) error {
	for _, t := range [][2]string{{"bmaptool", "bmap-tools"}, {"zstd", "zstd"}, {"xz", "xz-utils"}} {
		if err := need(t[0], t[1]); err != nil {
			return err
		}
	}
	if _, err := os.Stat(b.bin); err != nil {
		return fmt.Errorf("flashstation binary: %v (go build -o bin/flashstation ./cmd/flashstation)", err)
	}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return err
	}
	if err := b.makeImage(); err != nil {
		return err
	}
	b.env.detect()
	kinds := []string{kindFile + " (fresh regular files on " + fsType(b.dir) + ")"}
	if b.env.loop {
		kinds = append(kinds, kindLoop+" (losetup --direct-io=on over fresh sparse files)")
	} else {
		kinds = append(kinds, "no loop devices: "+b.env.loopNote)
	}
	used := []string{kindFile}
	if b.env.loop {
		used = append(used, kindLoop)
	}
	switch {
	case b.env.throttle != "":
		kinds = append(kinds, kindThrottled+": "+b.env.throttle)
		used = append(used, kindThrottled+" ("+b.env.cgroup+")")
	case b.env.loop:
		used = append(used, kindThrottled+" (flashstation --throttle only)")
		kinds = append(kinds, kindThrottled+": flashstation --throttle TARGET=25 on direct-io loops ("+b.env.cgNote+"); bmaptool cannot be throttled that way, so no bmaptool pair")
	default:
		kinds = append(kinds, "no throttled targets (no loop devices)")
	}
	want := map[string]bool{}
	for _, c := range strings.Split(caseList, ",") {
		want[strings.TrimSpace(c)] = true
	}
	var specs []caseSpec
	for _, c := range b.cases() {
		if want["all"] || want[c.ID] {
			specs = append(specs, c)
		}
	}
	if len(specs) == 0 {
		return fmt.Errorf("-cases %q: none of %s", caseList, strings.Join(caseIDs, ","))
	}

	// The warm cache: one unmeasured flash fills it (and the first runs
	// of both tools are not the machine's first).
	b.warmCache = filepath.Join(b.dir, "cache-warm")
	os.RemoveAll(b.warmCache)
	warmup := b.env.newFile()
	if _, _, err := b.flashstation(nil, b.warmCache, b.image, []target{warmup}, true, false); err != nil {
		return err
	}
	if _, err := b.bmaptool(nil, b.image, []target{warmup}); err != nil {
		return err
	}
	b.env.release([]target{warmup})

	load, _ := os.ReadFile("/proc/loadavg")
	doc := report{
		Machine:     fmt.Sprintf("nproc %d, kernel %s, loadavg at start %s", runtime.NumCPU(), kernel(), strings.Join(strings.Fields(string(load))[:3], " ")),
		ImageSize:   imageSize,
		MappedBytes: mappedBytes(),
		Runs:        b.runs,
		Throttled:   b.throttledRuns,
		Kinds:       kinds,
		Used:        used,
		Loop:        b.env.loop,
	}
	for i := range specs {
		c := &specs[i]
		fmt.Fprintf(os.Stderr, "flashbench: %s on %s (%d rounds)\n", c.Name, c.Kind, c.runs)
		if err := b.runCase(c); err != nil {
			return err
		}
		doc.Cases = append(doc.Cases, c)
	}
	var base *report
	if baseline != "" {
		data, err := os.ReadFile(baseline)
		if err == nil {
			base = &report{}
			err = json.Unmarshal(data, base)
		}
		if err != nil {
			return fmt.Errorf("-baseline: %v", err)
		}
	}
	printReport(&doc, base)
	if jsonOut != "" {
		data, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonOut, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// fsType names the filesystem holding dir (from /proc/mounts).
func fsType(dir string) string {
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "?"
	}
	abs, _ := filepath.Abs(dir)
	best, typ := "", "?"
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, typ = mp, f[2]
		}
	}
	return typ + " " + best
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// makeImage generates the image, its bmap (by bmaptool create) and its
// .zst and .xz copies, once per size.
func (b *bench) makeImage() error {
	b.image = filepath.Join(b.dir, fmt.Sprintf("ubuntu-core-like-%dMiB.img", imageSize/mib))
	b.bmap = b.image + ".bmap"
	if _, err := os.Stat(b.image + ".xz"); err == nil {
		return nil
	}
	fmt.Fprintf(os.Stderr, "flashbench: generating a %s image (once)...\n", human(imageSize))
	f, err := os.Create(b.image)
	if err != nil {
		return err
	}
	if err := f.Truncate(imageSize); err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{'f', 'l', 'a', 's', 'h'})
	buf := make([]byte, 8*mib)
	for _, r := range dataRanges() {
		for off := int64(0); off < r[1]; off += int64(len(buf)) {
			rng.Read(buf)
			if _, err := f.WriteAt(buf[:min(int64(len(buf)), r[1]-off)], r[0]+off); err != nil {
				return err
			}
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	steps := [][]string{
		{"bmaptool", "create", "-o", b.bmap, b.image},
		{"zstd", "-q", "-f", "-T0", "-3", b.image, "-o", b.image + ".zst"},
		{"xz", "-k", "-f", "-T0", "-0", b.image},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v %s", s, err, out)
		}
	}
	return nil
}

func human(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/mib)
}
