package main

import (
	"fmt"
	"strings"
)

// report is the -json document: the setup and every run's numbers.
type report struct {
	Machine     string      `json:"machine"`
	ImageSize   int64       `json:"image_size"`
	MappedBytes int64       `json:"mapped_bytes"`
	Runs        int         `json:"runs"`
	Throttled   int         `json:"throttled_runs"`
	Kinds       []string    `json:"target_kinds"`
	Used        []string    `json:"kinds_used"`
	Loop        bool        `json:"loop"` // block cases ran on direct-io loop devices
	Cases       []*caseSpec `json:"cases"`
}

const gib = 1 << 30

// col is the median over rounds of one number of one tool.
func (c *caseSpec) col(tool string, f func(measure) float64) (float64, bool) {
	var xs []float64
	for _, r := range c.Rounds {
		if m, ok := r.Runs[tool]; ok {
			xs = append(xs, f(m))
		}
	}
	return median(xs), len(xs) > 0
}

// ratio is the median over rounds of tool's wall time / bmaptool's, both
// from the same round.
func (c *caseSpec) ratio(tool string) (float64, bool) {
	var xs []float64
	for _, r := range c.Rounds {
		a, okA := r.Runs[tool]
		b, okB := r.Runs[toolBT]
		if okA && okB && b.Wall > 0 {
			xs = append(xs, a.Wall/b.Wall)
		}
	}
	return median(xs), len(xs) > 0
}

func wall(m measure) float64   { return m.Wall }
func first(m measure) float64  { return m.FirstByte }
func cpuOf(m measure) float64  { return m.cpu() }
func rssMiB(m measure) float64 { return float64(m.MaxRSSKiB) / 1024 }

// cpuPerGiB is flashstation's CPU seconds per verified GiB (mapped bytes
// times targets, every one read back).
func (c *caseSpec) cpuPerGiB(mapped int64) (float64, bool) {
	cpu, ok := c.col(toolFS, cpuOf)
	if !ok {
		return 0, false
	}
	return cpu / (float64(mapped) * float64(c.Targets) / gib), true
}

func f2(v float64, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func f3(v float64, ok bool) string {
	if !ok {
		return "-"
	}
	if v < 0 {
		return "none"
	}
	return fmt.Sprintf("%.3f", v)
}

func ratioStr(v float64, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

// ratioRange is the median ratio and, over several rounds, its spread.
func (c *caseSpec) ratioRange(tool string) string {
	v, ok := c.ratio(tool)
	if !ok {
		return "-"
	}
	lo, hi := 0.0, 0.0
	n := 0
	for _, r := range c.Rounds {
		a, okA := r.Runs[tool]
		b, okB := r.Runs[toolBT]
		if !okA || !okB || b.Wall <= 0 {
			continue
		}
		x := a.Wall / b.Wall
		if n == 0 || x < lo {
			lo = x
		}
		if n == 0 || x > hi {
			hi = x
		}
		n++
	}
	if n < 2 {
		return ratioStr(v, ok)
	}
	return fmt.Sprintf("%.2fx (%.2f-%.2f)", v, lo, hi)
}

func (d *report) find(id, kind string) *caseSpec {
	for _, c := range d.Cases {
		if c.ID == id && (kind == "" || c.Kind == kind) {
			return c
		}
	}
	return nil
}

func printReport(d *report, base *report) {
	fmt.Printf("machine: %s; image %s raw, %s mapped in %d ranges (bmap); %d rounds per case (%d for throttled cases); targets: %s\n",
		d.Machine, human(d.ImageSize), human(d.MappedBytes), len(dataRanges()), d.Runs, d.Throttled, strings.Join(d.Used, ", "))
	fmt.Println("target kinds:")
	for _, k := range d.Kinds {
		fmt.Printf("- %s\n", k)
	}
	fmt.Println()
	fmt.Println("fs = flashstation flash (writes, then reads every target back and compares: its normal mode); " +
		"fs-nv = flashstation flash --no-verify (like for like with bmaptool copy, which never reads back); bm = bmaptool copy. " +
		"Each round runs fs, fs-nv, bm in alternating order (fs fs-nv bm, then bm fs-nv fs, ...); ratios are per round, then the median; times are medians of wall seconds of the whole command. " +
		"First byte: from process start until a target first receives data (the earliest of several targets; for 8 sequential bmaptool copies, the first copy's) (loop: /sys/block/loopN/stat written sectors; file: allocated blocks; polled every 1 ms). " +
		"Cold: fresh empty flashstation --cache and the image's pages dropped (fsync + posix_fadvise DONTNEED) for both tools; warm: flashstation's cache filled, image and cache read into the page cache first (bmaptool has no cache: only the page cache differs). " +
		"Sequential bmaptool copies: times, CPU summed; RSS the largest. " +
		"CPU: user+sys from the child's rusage. Peak RSS: rusage maxrss.")
	fmt.Println()
	fmt.Println("| case | target | fs s | fs-nv s | bm s | fs/bm median (range) | fs-nv/bm median (range) | first byte s fs / bm | CPU s fs / fs-nv / bm | fs CPU s per verified GiB | peak RSS MiB fs / bm |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range d.Cases {
		fsW, okFS := c.col(toolFS, wall)
		nvW, okNV := c.col(toolFSNV, wall)
		bmW, okBM := c.col(toolBT, wall)
		fbFS, ok1 := c.col(toolFS, first)
		fbBM, ok2 := c.col(toolBT, first)
		cFS, ok3 := c.col(toolFS, cpuOf)
		cNV, ok4 := c.col(toolFSNV, cpuOf)
		cBM, ok5 := c.col(toolBT, cpuOf)
		perGiB, ok6 := c.cpuPerGiB(d.MappedBytes)
		mFS, ok7 := c.col(toolFS, rssMiB)
		mBM, ok8 := c.col(toolBT, rssMiB)
		kind := c.Kind
		if c.FSThrottle {
			kind += " (fs --throttle)"
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s / %s | %s | %s / %s |\n",
			c.Name, kind, f2(fsW, okFS), f2(nvW, okNV), f2(bmW, okBM), c.ratioRange(toolFS), c.ratioRange(toolFSNV),
			f3(fbFS, ok1), f3(fbBM, ok2), f2(cFS, ok3), f2(cNV, ok4), f2(cBM, ok5), f2(perGiB, ok6), f2(mFS, ok7), f2(mBM, ok8))
	}
	fmt.Println()

	// Throttled targets: share of the summed bandwidth.
	var thr []*caseSpec
	for _, id := range []string{"thr1", "thr8", "thr16"} {
		if c := d.find(id, ""); c != nil {
			thr = append(thr, c)
		}
	}
	if len(thr) > 0 {
		fmt.Println("Throttled targets (25 MB/s each way per target), flashstation with read-back. " +
			"Write-phase share = mapped bytes x N / (the slowest target's write seconds from --json) / (N x 25 MB/s); " +
			"whole-run share = bytes moved (mapped x N, twice when read back) / the command's wall time / (N x 25 MB/s): it includes start-up and preparing.")
		fmt.Println()
		fmt.Println("| targets | fs wall s | write-phase share | whole-run share | fs peak RSS MiB | bm effective MB/s (1 target) |")
		fmt.Println("|---:|---:|---:|---:|---:|---:|")
		for _, c := range thr {
			var wShare, rShare []float64
			for _, r := range c.Rounds {
				ts, m := r.FS[toolFS], r.Runs[toolFS]
				slowest := 0.0
				for _, t := range ts {
					slowest = max(slowest, t.Seconds)
				}
				n := float64(c.Targets)
				if slowest > 0 {
					wShare = append(wShare, float64(d.MappedBytes)*n/slowest/(n*throttleRate))
				}
				if m.Wall > 0 {
					rShare = append(rShare, 2*float64(d.MappedBytes)*n/m.Wall/(n*throttleRate))
				}
			}
			fsW, ok := c.col(toolFS, wall)
			rss, okR := c.col(toolFS, rssMiB)
			bm := "-"
			if w, ok := c.col(toolBT, wall); ok {
				bm = fmt.Sprintf("%.1f", float64(d.MappedBytes)/w/1e6)
			}
			fmt.Printf("| %d | %s | %.0f%% | %.0f%% | %s | %s |\n", c.Targets, f2(fsW, ok), 100*median(wShare), 100*median(rShare), f2(rss, okR), bm)
		}
		fmt.Println()
	}

	// Memory per target.
	rss := func(id, kind string) (float64, int, bool) {
		c := d.find(id, kind)
		if c == nil {
			return 0, 0, false
		}
		v, ok := c.col(toolFS, rssMiB)
		return v, c.Targets, ok
	}
	r1, n1, ok1 := rss("thr1", "")
	rN, nN, okN := rss("thr16", "")
	if !okN {
		rN, nN, okN = rss("thr8", "")
	}
	if !ok1 || !okN {
		r1, n1, ok1 = rss("warm", kindLoop)
		if !ok1 {
			r1, n1, ok1 = rss("warm", kindFile)
		}
		rN, nN, okN = rss("multi8", "")
	}
	perTarget, okPT := 0.0, false
	if ok1 && okN && nN > n1 {
		perTarget, okPT = (rN-r1)/float64(nN-n1), true
		fmt.Printf("flashstation peak RSS: %.1f MiB with %d target(s), %.1f MiB with %d: %.2f MiB per added target ((RSS%d-RSS%d)/%d)\n\n",
			r1, n1, rN, nN, perTarget, nN, n1, nN-n1)
	}

	// The engine rewrite's goals.
	blk := kindFile
	if d.Loop {
		blk = kindLoop
	}
	check := func(ok, have bool, format string, args ...any) {
		mark := "MET "
		switch {
		case !have:
			mark = "n/a "
		case !ok:
			mark = "MISS"
		}
		fmt.Printf("- %s %s\n", mark, fmt.Sprintf(format, args...))
	}
	fmt.Println("Goals of the engine rewrite (" + blk + " targets):")
	if c := d.find("cold", blk); c != nil {
		fb, ok := c.col(toolFS, first)
		check(ok && fb >= 0 && fb < 0.1, ok, "first byte under 0.1 s, cold raw: %.3f s (bmaptool %s s)", fb, f3(c.col(toolBT, first)))
		r, ok := c.ratio(toolFS)
		rnv, _ := c.ratio(toolFSNV)
		check(r <= 1.2, ok, "cold raw within 1.2x of bmaptool copy: %.2fx with read-back (%.2fx --no-verify)", r, rnv)
	}
	if c := d.find("warm", blk); c != nil {
		fb, ok := c.col(toolFS, first)
		check(ok && fb >= 0 && fb < 0.1, ok, "first byte under 0.1 s, warm raw: %.3f s", fb)
	}
	if c := d.find("xz", ""); c != nil {
		r, ok := c.ratio(toolFS)
		rnv, _ := c.ratio(toolFSNV)
		check(r <= 1.1, ok, "cold .xz within 1.1x of bmaptool copy img.xz: %.2fx with read-back (%.2fx --no-verify)", r, rnv)
	}
	if okPT {
		check(perTarget < 10, true, "under 10 MiB RSS per target: %.2f MiB", perTarget)
	}
	var parts []string
	for _, c := range d.Cases {
		if c.Kind == kindFile {
			continue
		}
		v, ok := c.cpuPerGiB(d.MappedBytes)
		if !ok {
			continue
		}
		s := fmt.Sprintf("%s on %s %.2f s", c.Name, c.Kind, v)
		if base != nil {
			if bc := base.find(c.ID, c.Kind); bc != nil {
				if bv, ok := bc.cpuPerGiB(base.MappedBytes); ok && bv > 0 {
					s += fmt.Sprintf(" (baseline %.2f s: %+.0f%%)", bv, 100*(v/bv-1))
				}
			}
		}
		parts = append(parts, s)
	}
	if len(parts) > 0 {
		note := "compare with -baseline FILE (a -json of today's engine); goal: down 60%"
		if base != nil {
			note = "goal: down 60% from the baseline"
			if base.ImageSize != d.ImageSize {
				note += fmt.Sprintf("; the baseline's image was %s, not %s: fixed costs weigh differently", human(base.ImageSize), human(d.ImageSize))
			}
		}
		fmt.Printf("- CPU per verified GiB on block targets (%s): %s\n", note, strings.Join(parts, "; "))
	}
}
