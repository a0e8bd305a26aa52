package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// Tools of a round.
const (
	toolFS   = "flashstation"           // with read-back (its normal mode)
	toolFSNV = "flashstation-no-verify" // --no-verify: like bmaptool copy
	toolBT   = "bmaptool"               // bmaptool copy (never reads back)
)

var caseIDs = []string{"cold", "warm", "xz", "zst", "multi8", "thr1", "thr8", "thr16"}

// caseSpec is one row of the table.
type caseSpec struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Kind    string   `json:"kind"`
	Targets int      `json:"targets"`
	Source  string   `json:"source"`
	Cold    bool     `json:"cold"`
	Tools   []string `json:"tools"`
	// FSThrottle: flashstation throttles itself (--throttle), no cgroup.
	FSThrottle bool      `json:"fs_throttle,omitempty"`
	Rounds     []roundRs `json:"rounds"`
	runs       int
}

// roundRs is one round of a case: each tool once, in Order.
type roundRs struct {
	Order []string              `json:"order"`
	Runs  map[string]measure    `json:"runs"`
	FS    map[string][]fsTarget `json:"flashstation_targets,omitempty"`
}

func (b *bench) cases() []caseSpec {
	blk := kindFile
	if b.env.loop {
		blk = kindLoop
	}
	all := []string{toolFS, toolFSNV, toolBT}
	var cs []caseSpec
	for _, k := range uniq(kindFile, blk) {
		cs = append(cs, caseSpec{ID: "cold", Name: "raw, cold, 1 target", Kind: k, Targets: 1, Source: b.image, Cold: true, Tools: all, runs: b.runs})
	}
	for _, k := range uniq(kindFile, blk) {
		cs = append(cs, caseSpec{ID: "warm", Name: "raw, warm, 1 target", Kind: k, Targets: 1, Source: b.image, Tools: all, runs: b.runs})
	}
	cs = append(cs,
		caseSpec{ID: "xz", Name: ".xz, cold, 1 target", Kind: blk, Targets: 1, Source: b.image + ".xz", Cold: true, Tools: all, runs: b.runs},
		caseSpec{ID: "zst", Name: ".zst, cold, 1 target", Kind: blk, Targets: 1, Source: b.image + ".zst", Cold: true, Tools: all, runs: b.runs},
		caseSpec{ID: "multi8", Name: "raw, warm, 8 targets (bmaptool: 8 copies one after another)", Kind: blk, Targets: 8, Source: b.image, Tools: all, runs: b.runs},
	)
	if b.env.loop {
		thr := caseSpec{ID: "thr1", Name: "raw, warm, 1 target at 25 MB/s", Kind: kindThrottled, Targets: 1, Source: b.image, Tools: all, runs: b.throttledRuns}
		fsOnly := []string{toolFS}
		if b.env.throttle == "" {
			thr.FSThrottle = true
			thr.Tools = []string{toolFS, toolFSNV}
		}
		cs = append(cs, thr,
			caseSpec{ID: "thr8", Name: "raw, warm, 8 targets at 25 MB/s at once", Kind: kindThrottled, Targets: 8, Source: b.image, Tools: fsOnly, FSThrottle: thr.FSThrottle, runs: b.throttledRuns},
			caseSpec{ID: "thr16", Name: "raw, warm, 16 targets at 25 MB/s at once", Kind: kindThrottled, Targets: 16, Source: b.image, Tools: fsOnly, FSThrottle: thr.FSThrottle, runs: b.throttledRuns},
		)
	}
	return cs
}

func uniq(xs ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// runCase runs c's rounds. Round r runs the tools in c.Tools order when
// r is even and in reverse order when odd (A B C, C B A, ...), so that
// neither tool always runs first after the other's disk activity.
func (b *bench) runCase(c *caseSpec) error {
	for r := range c.runs {
		order := append([]string(nil), c.Tools...)
		if r%2 == 1 {
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
		}
		rs := roundRs{Order: order, Runs: map[string]measure{}, FS: map[string][]fsTarget{}}
		for _, tool := range order {
			m, fs, err := b.runOne(c, tool)
			if err != nil {
				return fmt.Errorf("%s on %s, %s: %v", c.Name, c.Kind, tool, err)
			}
			rs.Runs[tool] = m
			if fs != nil {
				rs.FS[tool] = fs
			}
			settle()
		}
		c.Rounds = append(c.Rounds, rs)
	}
	return nil
}

// runOne runs one tool once on fresh targets.
func (b *bench) runOne(c *caseSpec, tool string) (measure, []fsTarget, error) {
	kind := c.Kind
	if kind == kindThrottled {
		kind = kindLoop
	}
	ts, err := b.env.newTargets(kind, c.Targets)
	if err != nil {
		return measure{}, nil, err
	}
	defer b.env.release(ts)
	var cg *cgroup
	if c.Kind == kindThrottled && !c.FSThrottle {
		if cg, err = b.env.newCgroup(ts); err != nil {
			return measure{}, nil, err
		}
		defer cg.remove()
	}
	cache := b.warmCache
	if c.Cold {
		cache = filepath.Join(b.dir, fmt.Sprintf("cache-cold-%d", b.env.next()))
		os.RemoveAll(cache)
		defer os.RemoveAll(cache)
		if err := dropFromCache(c.Source, b.bmap); err != nil {
			return measure{}, nil, err
		}
	} else {
		warmCache(c.Source, b.bmap)
		filepath.Walk(b.warmCache, func(p string, info os.FileInfo, err error) error {
			if err == nil && info.Mode().IsRegular() {
				warmCache(p)
			}
			return nil
		})
	}
	settle()
	if tool == toolBT {
		m, err := b.bmaptool(cg, c.Source, ts)
		return m, nil, err
	}
	m, doc, err := b.flashstation(cg, cache, c.Source, ts, tool == toolFSNV, c.FSThrottle)
	if err != nil {
		return m, nil, err
	}
	if c.Cold && doc.Image.Cached {
		return m, nil, fmt.Errorf("cold run but flashstation reports its cache was used")
	}
	if !c.Cold && !doc.Image.Cached {
		return m, nil, fmt.Errorf("warm run but flashstation prepared the image again")
	}
	return m, doc.Targets, nil
}
