package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func fadviseDontNeed(f *os.File) error {
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// measure is one process run.
type measure struct {
	Wall      float64 `json:"wall_s"`
	FirstByte float64 `json:"first_byte_s"` // -1: never seen
	User      float64 `json:"user_s"`
	Sys       float64 `json:"sys_s"`
	MaxRSSKiB int64   `json:"max_rss_kib"`
}

func (m measure) cpu() float64 { return m.User + m.Sys }

// fsTarget is one target of flashstation's --json output.
type fsTarget struct {
	Target        string  `json:"target"`
	MappedBytes   int64   `json:"mapped_bytes"`
	WrittenBytes  int64   `json:"written_bytes"`
	Seconds       float64 `json:"seconds"`
	VerifySeconds float64 `json:"verify_seconds"`
	Verified      bool    `json:"verified"`
	Error         string  `json:"error,omitempty"`
}

type fsDoc struct {
	Image struct {
		PrepareSeconds float64 `json:"prepare_seconds"`
		Cached         bool    `json:"cached"`
		MappedBytes    int64   `json:"mapped_bytes"`
	} `json:"image"`
	Targets []fsTarget `json:"targets"`
}

// run starts argv (in cg when not nil), polls the targets every
// millisecond for their first data, and returns the wall time, first-byte
// time (the earliest over targets), CPU and peak RSS of the process (and
// the descendants it waited for).
func (e *env) run(cg *cgroup, ts []target, argv []string) (measure, []byte, error) {
	argv = cg.wrap(argv)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	base := make([]int64, len(ts))
	for i, t := range ts {
		base[i] = written(t)
	}
	done := make(chan struct{})
	first := make(chan float64, 1)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return measure{}, nil, err
	}
	e.track(cmd.Process, true)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			for i, t := range ts {
				if written(t) > base[i] {
					first <- time.Since(start).Seconds()
					return
				}
			}
			select {
			case <-done:
				// A last look: data may have landed in the final millisecond.
				for i, t := range ts {
					if written(t) > base[i] {
						first <- -2 // seen only after exit
						return
					}
				}
				first <- -1
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	wall := time.Since(start).Seconds()
	e.track(cmd.Process, false)
	close(done)
	fb := <-first
	if fb == -2 {
		fb = wall
	}
	m := measure{Wall: wall, FirstByte: fb}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.User = time.Duration(ru.Utime.Nano()).Seconds()
		m.Sys = time.Duration(ru.Stime.Nano()).Seconds()
		m.MaxRSSKiB = ru.Maxrss
	}
	if err != nil {
		return m, stdout.Bytes(), fmt.Errorf("%v: %v\n%s%s", argv, err, stdout.String(), stderr.String())
	}
	return m, stdout.Bytes(), nil
}

// flashstation runs `flashstation flash` on fresh targets and checks that
// every target succeeded (and was verified unless noVerify).
func (b *bench) flashstation(cg *cgroup, cache, src string, ts []target, noVerify, fsThrottle bool) (measure, fsDoc, error) {
	argv := []string{b.bin, "flash", "--json", "--allow-non-usb", "--cache", cache, "--bmap", b.bmap}
	if noVerify {
		argv = append(argv, "--no-verify")
	}
	if fsThrottle {
		for _, t := range ts {
			argv = append(argv, "--throttle", fmt.Sprintf("%s=%g", t.path, float64(throttleRate)/1e6))
		}
	}
	argv = append(argv, src)
	for _, t := range ts {
		argv = append(argv, t.path)
	}
	m, out, err := b.env.run(cg, ts, argv)
	var doc fsDoc
	if err != nil {
		return m, doc, err
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return m, doc, fmt.Errorf("flashstation --json: %v: %s", err, out)
	}
	if len(doc.Targets) != len(ts) {
		return m, doc, fmt.Errorf("flashstation --json: %d targets, want %d", len(doc.Targets), len(ts))
	}
	for _, t := range doc.Targets {
		if t.Error != "" || (!noVerify && !t.Verified) {
			return m, doc, fmt.Errorf("flashstation: target %s not flashed and verified: %s", t.Target, out)
		}
	}
	return m, doc, nil
}

// bmaptool runs `bmaptool copy` once per target, one after another, and
// sums the times (peak RSS is the largest, first byte the first run's).
func (b *bench) bmaptool(cg *cgroup, src string, ts []target) (measure, error) {
	var sum measure
	for i, t := range ts {
		m, _, err := b.env.run(cg, []target{t}, []string{"bmaptool", "-q", "copy", "--bmap", b.bmap, src, t.path})
		if err != nil {
			return sum, err
		}
		if i == 0 {
			sum.FirstByte = m.FirstByte
		}
		sum.Wall += m.Wall
		sum.User += m.User
		sum.Sys += m.Sys
		sum.MaxRSSKiB = max(sum.MaxRSSKiB, m.MaxRSSKiB)
		if i < len(ts)-1 {
			settle()
		}
	}
	return sum, nil
}

// settle flushes dirty pages and lets the disk quiet down between runs
// (never inside a timed run).
func settle() {
	syscall.Sync()
	time.Sleep(300 * time.Millisecond)
}

// dropFromCache syncs the files and drops their pages from the page cache
// (posix_fadvise DONTNEED: just these files, not the tools' own binaries
// and libraries).
func dropFromCache(paths ...string) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		f.Sync()
		err = fadviseDontNeed(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// warmCache reads the files so their pages are cached.
func warmCache(paths ...string) {
	buf := make([]byte, 4*mib)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		for {
			if _, err := f.Read(buf); err != nil {
				break
			}
		}
		f.Close()
	}
}
