package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/usb/libusb"
)

type flashFlags struct {
	bmap, sha256, cache, partition string
	noVerify, json, allowNonUSB    bool
	reboot                         bool
	throttle                       []string
}

func newFlashCommand(stdout, stderr io.Writer) *cobra.Command {
	var o flashFlags
	cmd := &cobra.Command{
		Use:   "flash [--bmap FILE] [--no-verify] [--json] IMAGE TARGET...",
		Short: "Write one image to targets: block devices, files or fastboot devices",
		Long: `Write an image (raw, .zst, .gz or .xz, found by content) to every TARGET at
once, each target on its own: a slow or failing target never holds back the
others. Only the mapped ranges are written (from --bmap, or the image's
non-zero blocks), the first MiB last, then every target is read back and
compared (unless --no-verify).

TARGET is a block device (a board's eMMC in USB mass-storage mode; only disks
on a USB port unless --allow-non-usb, never a mounted or system disk), a
regular file, fastboot:tcp:HOST:PORT or fastboot:usb:PORTPATH. Fastboot
devices cannot be read back: their result says so. A path in /dev (also
through symbolic links, like /dev/disk/by-path/...) must be a block device:
anything else there is refused (no-device) before any work, and a missing
file target is created only outside /dev.

The image is prepared once into a cache (decompressed, mapped, checksummed)
and reused. Exit 1 when any target failed.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFlash(cmd.Context(), o, args[0], args[1:], stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.bmap, "bmap", "", "block map of the image (bmaptool create)")
	f.StringVar(&o.sha256, "sha256", "", "expected SHA-256 of the image file")
	f.BoolVar(&o.noVerify, "no-verify", false, "do not read targets back")
	f.BoolVar(&o.json, "json", false, "print one JSON document on stdout")
	f.BoolVar(&o.allowNonUSB, "allow-non-usb", false, "allow disks that are not on a USB port (never the system disk)")
	f.StringVar(&o.cache, "cache", "", "prepared image cache (default $XDG_CACHE_HOME/flashstation/images)")
	f.StringVar(&o.partition, "partition", "mmc0", "fastboot partition")
	f.BoolVar(&o.reboot, "reboot", false, "reboot fastboot devices once flashed")
	f.StringArrayVar(&o.throttle, "throttle", nil, "limit TARGET=MB/s (a slow medium, for labs and benchmarks)")
	_ = f.MarkHidden("throttle")
	return cmd
}

func defaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "flashstation", "images")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "flashstation", "images")
	}
	return filepath.Join(os.TempDir(), "flashstation-images")
}

// flashTargetJSON is one target of `flash --json`.
type flashTargetJSON struct {
	Target        string  `json:"target"`
	MappedBytes   int64   `json:"mapped_bytes"`
	WrittenBytes  int64   `json:"written_bytes"`
	Seconds       float64 `json:"seconds"`
	MBPerS        float64 `json:"mb_per_s"`
	Verified      bool    `json:"verified"`
	VerifySeconds float64 `json:"verify_seconds"`
	Note          string  `json:"note,omitempty"`
	Error         string  `json:"error,omitempty"`
	Reason        string  `json:"reason,omitempty"`
	Offset        *int64  `json:"offset,omitempty"`
}

type flashImageJSON struct {
	Source         string  `json:"source"`
	SHA256         string  `json:"sha256"`
	Format         string  `json:"format"`
	Size           int64   `json:"size"`
	MappedBytes    int64   `json:"mapped_bytes"`
	Bmap           string  `json:"bmap,omitempty"`
	PrepareSeconds float64 `json:"prepare_seconds"`
	Cached         bool    `json:"cached"`
}

func runFlash(ctx context.Context, o flashFlags, image string, targets []string, stdout, stderr io.Writer) error {
	throttle := map[string]float64{}
	for _, t := range o.throttle {
		name, rate, ok := strings.Cut(t, "=")
		mbps, err := strconv.ParseFloat(rate, 64)
		if !ok || err != nil || mbps <= 0 {
			return usageErrorf("--throttle %q: want TARGET=MB/s", t)
		}
		throttle[name] = mbps * 1e6
	}
	// Targets that cannot be flashed (a /dev path with no block device
	// behind it, a malformed fastboot URL) are refused before any work:
	// nothing is prepared for them, nothing is created.
	results := make([]flash.Result, len(targets))
	refused := 0
	for i, spec := range targets {
		if err := flash.CheckTarget(spec); err != nil {
			results[i] = flash.Result{Target: spec, Failure: asFailure(err)}
			refused++
		}
	}
	if refused == len(targets) {
		return reportFlash(o, image, nil, results, stdout)
	}
	if o.cache == "" {
		o.cache = defaultCacheDir()
	}
	cache, err := flash.NewCache(o.cache)
	if err != nil {
		return configError(fmt.Errorf("--cache %s: %w", o.cache, err), "Give --cache a directory this user can write to.")
	}
	tty := isTerminal(stderr)
	var lastPrep time.Time
	var prepMu sync.Mutex
	showPrep := true // until the targets' own progress takes the terminal
	// Open streams a new image: the targets write it as it is decompressed
	// and checked; what fails its checks fails every target cleanly.
	img, err := cache.Open(ctx, flash.ImageSpec{Path: image, Bmap: o.bmap, SHA256: o.sha256}, func(p flash.PrepareProgress) {
		prepMu.Lock()
		defer prepMu.Unlock()
		if !tty || !showPrep || time.Since(lastPrep) < 200*time.Millisecond {
			return
		}
		lastPrep = time.Now()
		fmt.Fprintf(stderr, "\r\033[Kpreparing %s: %s %s", filepath.Base(image), p.Stage, flash.HumanBytes(p.Done))
	})
	endPrep := func() {
		prepMu.Lock()
		defer prepMu.Unlock()
		if tty && !lastPrep.IsZero() && showPrep {
			fmt.Fprint(stderr, "\r\033[K")
		}
		showPrep = false
	}
	if err != nil {
		endPrep()
		return flashImageRefused(o, image, targets, results, err, stdout)
	}
	if !o.json {
		endPrep()
		if img.Streamed() {
			fmt.Fprintf(stderr, "image %s: %s, streamed to the targets as it is prepared (first flash)\n", image, img.Format)
		} else {
			how := fmt.Sprintf("prepared in %.1fs", img.PrepareTime)
			if img.Cached {
				how = "from the cache"
			}
			fmt.Fprintf(stderr, "image %s: %s %s, %s mapped (%s)\n", image, img.Format, flash.HumanBytes(img.Size),
				flash.HumanBytes(img.MappedBytes), how)
		}
	}

	// libusb opens only if a fastboot:usb target is given; closed after
	// the jobs (deferred first, it runs last).
	lib := libusb.New()
	defer lib.Close()
	topts := flash.TargetOptions{
		Block:     flash.BlockOptions{AllowNonUSB: o.allowNonUSB},
		Partition: o.partition, Reboot: o.reboot, Throttle: throttle,
		USB: lib,
	}

	var jobs []flash.Job
	var jobIdx []int
	var created []string // file targets this run makes: gone again if the image is refused
	for i, spec := range targets {
		if results[i].Failure != nil {
			continue
		}
		if !strings.HasPrefix(spec, "fastboot:") {
			if _, err := os.Lstat(spec); errors.Is(err, fs.ErrNotExist) {
				created = append(created, spec)
			}
		}
		j, err := flash.OpenJob(ctx, spec, topts)
		if err != nil {
			results[i] = flash.Result{Target: spec, Failure: asFailure(err)}
			continue
		}
		defer j.Close()
		jobs = append(jobs, j)
		jobIdx = append(jobIdx, i)
	}
	var display *progressDisplay
	opts := flash.Options{Verify: !o.noVerify}
	if tty && !o.json {
		endPrep()
		display = newProgressDisplay(stderr, targets)
		opts.Progress = display.update
	}
	for k, r := range flash.RunJobs(ctx, img, jobs, opts) {
		results[jobIdx[k]] = r
	}
	if display != nil {
		display.finish()
	}
	endPrep()
	final, err := img.Wait(ctx)
	if err != nil {
		// Failed midway: every target has failed already (those that took
		// part of it with their boot area cleared); a file made for this
		// run is removed, so no half image is left looking like one.
		for _, j := range jobs {
			j.Close()
		}
		for _, p := range created {
			os.Remove(p)
		}
		if errors.Is(err, flash.ErrImageRefused) {
			return flashImageRefused(o, image, targets, results, err, stdout)
		}
		return reportFlash(o, image, nil, results, stdout) // stopped, or the cache's disk
	}
	if img.Streamed() && !o.json {
		fmt.Fprintf(stderr, "image %s: %s %s, %s mapped (prepared in %.1fs, streamed to the targets)\n", image, final.Format,
			flash.HumanBytes(final.Size), flash.HumanBytes(final.MappedBytes), final.PrepareTime)
	}
	return reportFlash(o, image, final, results, stdout)
}

// flashImageRefused reports an image that could not be opened or failed
// its checks: each target not failed already fails image-refused.
func flashImageRefused(o flashFlags, image string, targets []string, results []flash.Result, err error, stdout io.Writer) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return usageHint(fmt.Errorf("image %s: %w", image, err), "Check the IMAGE path (and --bmap); the first argument is the image.")
	case !errors.Is(err, flash.ErrImageRefused):
		return err
	}
	// Each target fails with image-refused (a target that took part of it
	// has its boot area cleared, and says so).
	streamed := false
	for i, spec := range targets {
		if results[i].Failure == nil {
			results[i] = flash.Result{Target: spec, Failure: &flash.Failure{Reason: flash.ReasonImage, Offset: -1, Detail: err.Error() + "; nothing was written to the target", Err: err}}
		} else if results[i].Failure.Reason == flash.ReasonImage {
			streamed = true
		}
	}
	if o.json {
		return reportFlash(o, image, nil, results, stdout)
	}
	if streamed {
		printFlashResults(stdout, results)
	}
	return &exitError{code: exitVerdict, reason: flash.ReasonImage, err: err,
		hint: "Check the image against what was published (file, --sha256, --bmap) before flashing."}
}

// asFailure returns err's Failure, or makes an open-error of it.
func asFailure(err error) *flash.Failure {
	var f *flash.Failure
	if !errors.As(err, &f) {
		f = &flash.Failure{Reason: flash.ReasonOpen, Offset: -1, Detail: err.Error(), Err: err}
	}
	return f
}

// reportFlash prints the results (img is nil when every target was refused
// before the image was prepared) and fails when any target failed.
func reportFlash(o flashFlags, image string, img *flash.Prepared, results []flash.Result, stdout io.Writer) error {
	failed := 0
	for _, r := range results {
		if r.Failure != nil {
			failed++
		}
	}
	if o.json {
		doc := struct {
			Image   *flashImageJSON   `json:"image,omitempty"`
			Targets []flashTargetJSON `json:"targets"`
		}{}
		if img != nil {
			doc.Image = &flashImageJSON{Source: image, SHA256: img.SourceSHA256, Format: string(img.Format), Size: img.Size,
				MappedBytes: img.MappedBytes, PrepareSeconds: img.PrepareTime, Cached: img.Cached}
			if img.Bmap != nil {
				doc.Image.Bmap = img.Bmap.Path
			}
		}
		for _, r := range results {
			t := flashTargetJSON{Target: r.Target, MappedBytes: r.MappedBytes, WrittenBytes: r.WrittenBytes,
				Seconds: round3(r.WriteTime.Seconds()), MBPerS: round3(r.MBPerSec()), Verified: r.Verified,
				VerifySeconds: round3(r.VerifyTime.Seconds()), Note: r.VerifyNote}
			if f := r.Failure; f != nil {
				t.Error, t.Reason = f.Error(), f.Reason
				if f.Offset >= 0 {
					off := f.Offset
					t.Offset = &off
				}
			}
			doc.Targets = append(doc.Targets, t)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return err
		}
	} else {
		printFlashResults(stdout, results)
	}
	if failed > 0 {
		return reported(exitVerdict, fmt.Errorf("%d of %d targets failed", failed, len(results)))
	}
	return nil
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

func printFlashResults(w io.Writer, results []flash.Result) {
	width := 6
	for _, r := range results {
		width = max(width, len(r.Target))
	}
	for _, r := range results {
		switch {
		case r.Failure != nil:
			fmt.Fprintf(w, "%-*s  FAIL  %s\n", width, r.Target, r.Failure)
		default:
			check := "read back and verified"
			if !r.Verified {
				check = r.VerifyNote
			}
			fmt.Fprintf(w, "%-*s  OK    %s in %.1fs (%.1f MB/s), %s", width, r.Target, flash.HumanBytes(r.WrittenBytes),
				r.WriteTime.Seconds(), r.MBPerSec(), check)
			if r.Verified {
				fmt.Fprintf(w, " in %.1fs", r.VerifyTime.Seconds())
			}
			fmt.Fprintln(w)
		}
	}
}

// progressDisplay redraws one line per target on a terminal.
type progressDisplay struct {
	mu    sync.Mutex
	w     io.Writer
	names []string
	lines map[string]string
	drawn bool
	last  time.Time
}

func newProgressDisplay(w io.Writer, names []string) *progressDisplay {
	return &progressDisplay{w: w, names: names, lines: map[string]string{}}
}

func (d *progressDisplay) update(p flash.Progress) {
	d.mu.Lock()
	defer d.mu.Unlock()
	eta := ""
	if p.ETA > 0 {
		eta = " ETA " + p.ETA.Round(time.Second).String()
	}
	if p.Total > 0 {
		pct := float64(p.Done) / float64(p.Total) * 100
		d.lines[p.Target] = fmt.Sprintf("%-6s %5.1f%% %s/%s %6.1f MB/s%s", p.Phase, pct, flash.HumanBytes(p.Done), flash.HumanBytes(p.Total), p.Rate/1e6, eta)
	} else { // streaming an image whose size is not known yet
		d.lines[p.Target] = fmt.Sprintf("%-6s        %s %6.1f MB/s", p.Phase, flash.HumanBytes(p.Done), p.Rate/1e6)
	}
	if time.Since(d.last) >= 100*time.Millisecond {
		d.draw()
	}
}

func (d *progressDisplay) draw() {
	d.last = time.Now()
	if d.drawn {
		fmt.Fprintf(d.w, "\033[%dA", len(d.names))
	}
	width := 0
	for _, n := range d.names {
		width = max(width, len(n))
	}
	for _, n := range d.names {
		fmt.Fprintf(d.w, "\r\033[K%-*s  %s\n", width, n, d.lines[n])
	}
	d.drawn = true
}

func (d *progressDisplay) finish() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.drawn {
		fmt.Fprintf(d.w, "\033[%dA", len(d.names))
		for range d.names {
			fmt.Fprint(d.w, "\r\033[K\n")
		}
		fmt.Fprintf(d.w, "\033[%dA", len(d.names))
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
