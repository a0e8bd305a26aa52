// Command flashbench measures flashstation's flash engine side by side with
// the tools factories use instead (bmaptool copy, dd) on a generated
// Ubuntu-Core-like image, and prints a table with ratios. It is run by
// `make bench`; it is a measurement, not a test.
//
// Targets are loop devices over fresh sparse files when run as root (as
// losetup makes them by default), else regular files. Each case runs
// -runs times and the median is reported.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

const (
	imageSize = 1 << 30
	mib       = 1 << 20
)

// dataRanges place about a third of the image in random data, like an
// Ubuntu Core image's seed partition split over a few extents.
var dataRanges = [][2]int64{
	{0, 8 * mib}, {16 * mib, 100 * mib}, {300 * mib, 110 * mib}, {600 * mib, 100 * mib}, {1000 * mib, 23 * mib},
}

type bench struct {
	dir   string
	bin   string
	runs  int
	loop  bool
	image string
	bmap  string
	seq   int
}

func main() {
	dir := flag.String("dir", filepath.Join(os.TempDir(), "flashstation-bench"), "work directory (the image is kept for later runs)")
	bin := flag.String("bin", "bin/flashstation", "flashstation binary")
	runs := flag.Int("runs", 5, "rounds (the median per case is reported)")
	flag.Parse()
	b := &bench{dir: *dir, bin: *bin, runs: *runs}
	if err := b.run(); err != nil {
		fmt.Fprintln(os.Stderr, "flashbench:", err)
		os.Exit(1)
	}
}

func need(tool, pkg string) error {
	if _, err := exec.LookPath(tool); err != nil {
		return fmt.Errorf("%s not found: apt-get install %s", tool, pkg)
	}
	return nil
}

func (b *bench) run() error {
	for _, t := range [][2]string{{"bmaptool", "bmap-tools"}, {"dd", "coreutils"}, {"zstd", "zstd"}, {"xz", "xz-utils"}} {
		if err := need(t[0], t[1]); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return err
	}
	b.loop = os.Geteuid() == 0 && exec.Command("losetup", "--find").Run() == nil
	defer b.detachAll()
	if err := b.makeImage(); err != nil {
		return err
	}
	mapped := int64(0)
	for _, r := range dataRanges {
		mapped += r[1]
	}
	kind := "regular files"
	if b.loop {
		kind = "loop devices over fresh sparse files (losetup defaults)"
	}
	fmt.Printf("image: %s raw, %s mapped in %d ranges; targets: %s; median of %d rounds\n",
		human(imageSize), human(mapped), len(dataRanges), kind, b.runs)
	fmt.Println("(every round runs every case once; times are wall-clock seconds of the whole command)")

	// Warm the prepared image cache once, so flashstation's times are the
	// flashing itself (the cache is what a station reuses all day).
	warm := filepath.Join(b.dir, "cache")
	if _, err := b.flashstation(warm, []string{b.newTarget()}, "--bmap", b.bmap, b.image); err != nil {
		return err
	}

	// Every round runs every case once, in the same order, so that slow
	// drifts of the host (its disk cache, TRIM after deletes) hit all
	// cases alike; the median over rounds is reported.
	rate := 0.0 // the throttle, set after the first round
	cases := []struct {
		name string
		run  func() float64
	}{
		{"bmaptool copy, 1 target (no read-back)", func() float64 {
			return b.timeCmd("bmaptool", "-q", "copy", "--bmap", b.bmap, b.image, b.newTarget())
		}},
		{"dd bs=4M conv=fsync, 1 target (no read-back)", func() float64 {
			return b.timeCmd("dd", "if="+b.image, "of="+b.newTarget(), "bs=4M", "conv=fsync,notrunc", "status=none")
		}},
		{"flashstation, 1 target, read back", func() float64 {
			return must(b.flashstation(warm, []string{b.newTarget()}, "--bmap", b.bmap, b.image)).wall
		}},
		{"bmaptool copy, 4 targets one after another", func() float64 {
			total := 0.0
			for range 4 {
				total += b.timeCmd("bmaptool", "-q", "copy", "--bmap", b.bmap, b.image, b.newTarget())
				settle()
			}
			return total
		}},
	}
	var perFree, perThrottled [][]float64
	cases = append(cases, struct {
		name string
		run  func() float64
	}{"flashstation, 4 targets at once, read back", func() float64 {
		r := must(b.flashstation(warm, b.newTargets(4), "--bmap", b.bmap, b.image))
		perFree = append(perFree, r.perTarget)
		return r.wall
	}})
	for _, f := range []string{"zst", "xz"} {
		src := b.image + "." + f
		cases = append(cases, struct {
			name string
			run  func() float64
		}{fmt.Sprintf("flashstation from .%s (cold cache: decompress + flash), 1 target", f), func() float64 {
			cold := filepath.Join(b.dir, fmt.Sprintf("cold-%d", b.next()))
			defer os.RemoveAll(cold)
			return must(b.flashstation(cold, []string{b.newTarget()}, "--bmap", b.bmap, src)).wall
		}})
	}
	cases = append(cases, struct {
		name string
		run  func() float64
	}{"flashstation, 4 targets, one throttled to a quarter speed", func() float64 {
		ts := b.newTargets(4)
		r := must(b.flashstation(warm, ts, "--bmap", b.bmap, "--throttle", fmt.Sprintf("%s=%.1f", ts[3], rate), b.image))
		perThrottled = append(perThrottled, r.perTarget)
		return r.wall
	}})
	times := make([][]float64, len(cases))
	for round := range b.runs {
		fmt.Fprintf(os.Stderr, "flashbench: round %d of %d\n", round+1, b.runs)
		for i, c := range cases {
			if rate == 0 && strings.Contains(c.name, "throttled") {
				// A quarter of one target's speed (write + read-back).
				rate = float64(mapped) * 2 / median(times[2]) / 4 / 1e6
			}
			times[i] = append(times[i], c.run())
			settle()
		}
	}
	type row struct {
		name    string
		seconds float64
	}
	var rows []row
	for i, c := range cases {
		rows = append(rows, row{c.name, median(times[i])})
	}
	bmap1, dd1, fs1, bmap4, fs4 := rows[0].seconds, rows[1].seconds, rows[2].seconds, rows[3].seconds, rows[4].seconds
	fs4Per, throttledPer := medianColumns(perFree), medianColumns(perThrottled)
	slowest := throttledPer[3]
	fmt.Printf("%-70s %9s %10s\n", "case", "seconds", "vs bmaptool")
	for _, r := range rows {
		ratio := ""
		switch {
		case strings.Contains(r.name, "throttled"):
			ratio = ""
		case strings.Contains(r.name, "4 targets"):
			ratio = fmt.Sprintf("%.2fx", r.seconds/bmap4)
		default:
			ratio = fmt.Sprintf("%.2fx", r.seconds/bmap1)
		}
		fmt.Printf("%-70s %9.2f %10s\n", r.name, r.seconds, ratio)
	}
	fmt.Println()
	fmt.Printf("per-target seconds (write + read-back), 4 at once:          %s\n", fmtList(fs4Per))
	fmt.Printf("same with target 4 throttled to %.0f MB/s (a quarter speed):  %s\n", rate, fmtList(throttledPer))
	worst := 0.0
	for i := 0; i < 3; i++ {
		worst = max(worst, throttledPer[i]/fs4Per[i])
	}
	fmt.Println()
	check := func(ok bool, format string, args ...any) {
		mark := "MET "
		if !ok {
			mark = "MISS"
		}
		fmt.Printf("%s %s\n", mark, fmt.Sprintf(format, args...))
	}
	check(fs1 <= bmap1, "1 target with read-back: %.2fs vs bmaptool copy %.2fs (target: at most bmaptool's time)", fs1, bmap1)
	check(fs4 <= bmap4/2, "4 targets: %.2fs vs 4 sequential bmaptool copy %.2fs (target: at most half)", fs4, bmap4)
	check(worst <= 1.10, "throttled target (%.2fs) leaves the others within %.0f%% of their times (target: 10%%)", slowest, (worst-1)*100)
	fmt.Printf("dd writes the whole image: flashstation with read-back takes %.2fx dd's time\n", fs1/dd1)
	return nil
}

func fmtList(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(parts, "  ")
}

func must(r result, err error) result {
	if err != nil {
		fmt.Fprintln(os.Stderr, "flashbench:", err)
		os.Exit(1)
	}
	return r
}

func (b *bench) next() int { b.seq++; return b.seq }

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// medianColumns is the median of each column of rows.
func medianColumns(rows [][]float64) []float64 {
	var out []float64
	for c := range rows[0] {
		var col []float64
		for _, r := range rows {
			col = append(col, r[c])
		}
		out = append(out, median(col))
	}
	return out
}

// settle flushes dirty pages and lets the disk quiet down between runs.
func settle() {
	syscall.Sync()
	time.Sleep(300 * time.Millisecond)
}

// newTarget makes a fresh 1 GiB target: a loop device over a new sparse
// file (root) or the file itself.
func (b *bench) newTarget() string {
	n := b.next()
	file := filepath.Join(b.dir, fmt.Sprintf("target-%d.img", n%8))
	if b.loop {
		// Detach whatever still uses this backing file.
		if out, err := exec.Command("losetup", "-j", file).Output(); err == nil {
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if dev, _, ok := strings.Cut(line, ":"); ok {
					exec.Command("losetup", "-d", dev).Run()
				}
			}
		}
	}
	os.Remove(file)
	f, err := os.Create(file)
	if err != nil {
		panic(err)
	}
	f.Truncate(imageSize)
	f.Close()
	if !b.loop {
		return file
	}
	out, err := exec.Command("losetup", "--find", "--show", file).Output()
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(out))
}

// detachAll frees the loop devices of the target files.
func (b *bench) detachAll() {
	if !b.loop {
		return
	}
	for i := range 8 {
		file := filepath.Join(b.dir, fmt.Sprintf("target-%d.img", i))
		if out, err := exec.Command("losetup", "-j", file).Output(); err == nil {
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if dev, _, ok := strings.Cut(line, ":"); ok {
					exec.Command("losetup", "-d", dev).Run()
				}
			}
		}
		os.Remove(file)
	}
}

func (b *bench) newTargets(n int) []string {
	var ts []string
	for range n {
		ts = append(ts, b.newTarget())
	}
	return ts
}

func (b *bench) timeCmd(name string, args ...string) float64 {
	start := time.Now()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "flashbench: %s %v: %v\n%s", name, args, err, out)
		os.Exit(1)
	}
	return time.Since(start).Seconds()
}

type result struct {
	wall      float64
	perTarget []float64
}

func (b *bench) flashstation(cache string, targets []string, args ...string) (result, error) {
	full := append([]string{"flash", "--json", "--allow-non-usb", "--cache", cache}, args...)
	full = append(full, targets...)
	start := time.Now()
	cmd := exec.Command(b.bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	wall := time.Since(start).Seconds()
	if err != nil {
		return result{}, fmt.Errorf("flashstation %v: %v\n%s%s", full, err, stdout.String(), stderr.String())
	}
	var doc struct {
		Targets []struct {
			Seconds       float64 `json:"seconds"`
			VerifySeconds float64 `json:"verify_seconds"`
			Verified      bool    `json:"verified"`
		} `json:"targets"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		return result{}, err
	}
	r := result{wall: wall}
	for _, t := range doc.Targets {
		if !t.Verified {
			return r, fmt.Errorf("a target was not verified: %s", stdout.String())
		}
		r.perTarget = append(r.perTarget, t.Seconds+t.VerifySeconds)
	}
	return r, nil
}

// makeImage generates the image, its bmap (by bmaptool create) and its
// .zst and .xz copies, once.
func (b *bench) makeImage() error {
	b.image = filepath.Join(b.dir, "ubuntu-core-like.img")
	b.bmap = b.image + ".bmap"
	if _, err := os.Stat(b.image + ".xz"); err == nil {
		return nil
	}
	fmt.Fprintln(os.Stderr, "flashbench: generating a 1 GiB image (once)...")
	f, err := os.Create(b.image)
	if err != nil {
		return err
	}
	if err := f.Truncate(imageSize); err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{'f', 'l', 'a', 's', 'h'})
	buf := make([]byte, 8*mib)
	for _, r := range dataRanges {
		for off := int64(0); off < r[1]; off += int64(len(buf)) {
			rng.Read(buf)
			if _, err := f.WriteAt(buf[:min(int64(len(buf)), r[1]-off)], r[0]+off); err != nil {
				return err
			}
		}
	}
	f.Close()
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
