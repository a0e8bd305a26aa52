package flash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"
)

// Reason codes of a failed target, for operators and QA.
const (
	ReasonUnplugged  = "unplugged"       // the target disappeared mid-way
	ReasonWriteError = "write-error"     // a write failed (offset in Failure)
	ReasonTooSmall   = "too-small"       // the target is smaller than the image
	ReasonBusy       = "busy"            // the target is in use elsewhere
	ReasonMounted    = "mounted"         // the disk or a partition is mounted
	ReasonSystemDisk = "system-disk"     // the disk holds the running system
	ReasonNotUSB     = "not-usb"         // the disk is not on (the slot's) USB port
	ReasonOpen       = "open-error"      // the target cannot be opened
	ReasonVerify     = "verify-mismatch" // read-back differs (offset in Failure)
	ReasonReadError  = "read-error"      // read-back failed (offset in Failure)
	ReasonFastboot   = "fastboot-error"  // the fastboot device refused a command
	ReasonCancelled  = "cancelled"       // the job was stopped
	ReasonImage      = "image-refused"   // the image failed its checks
)

// Failure is why one target failed.
type Failure struct {
	Reason string
	Offset int64 // byte offset for write-error, read-error, verify-mismatch; -1 otherwise
	Detail string
	Err    error
}

func (f *Failure) Error() string {
	s := f.Reason
	if f.Offset >= 0 && (f.Reason == ReasonWriteError || f.Reason == ReasonVerify || f.Reason == ReasonReadError) {
		s += fmt.Sprintf(" at offset %d (%s)", f.Offset, HumanBytes(f.Offset))
	}
	if f.Detail != "" {
		s += ": " + f.Detail
	}
	return s
}

func (f *Failure) Unwrap() error { return f.Err }

// Progress is a target's progress, reported a few times a second.
type Progress struct {
	Target  string
	Phase   string // "write", "verify", "download" (fastboot), "flash"
	Done    int64  // bytes of this phase
	Total   int64
	Rate    float64 // bytes per second over the phase so far
	ETA     time.Duration
	Elapsed time.Duration
}

// Options tune a write.
type Options struct {
	// Verify reads every mapped chunk back and compares its SHA-256 (on
	// by default in the command line).
	Verify bool
	// Retries is how many times a transient error (EIO, EBUSY, EAGAIN) is
	// retried before the target fails (default 3).
	Retries int
	// Progress receives updates at most every ProgressEvery (default 200 ms).
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Result is one target's outcome.
type Result struct {
	Target       string
	MappedBytes  int64
	WrittenBytes int64
	WriteTime    time.Duration
	VerifyTime   time.Duration
	Verified     bool
	VerifyNote   string // e.g. why a target could not be read back
	Failure      *Failure
}

// MBPerSec is the write rate in MB/s (10^6 bytes).
func (r Result) MBPerSec() float64 {
	if r.WriteTime <= 0 {
		return 0
	}
	return float64(r.WrittenBytes) / r.WriteTime.Seconds() / 1e6
}

// piece is one write: a chunk or a part of one.
type piece struct{ off, length int64 }

// writeOrder is the order pieces are written: everything from 1 MiB on,
// then the first MiB last, so a half-written board never boots.
func writeOrder(img *Prepared) []piece {
	const first = 1 << 20
	var late, early []piece
	for _, c := range img.Chunks {
		off, end := c.Offset, c.Offset+c.Length
		if off < first {
			cut := min(end, first)
			early = append(early, piece{off, cut - off})
			off = cut
		}
		if off < end {
			late = append(late, piece{off, end - off})
		}
	}
	return append(late, early...)
}

// roundUp rounds n up to a multiple of align.
func roundUp(n int64, align int) int64 {
	if align <= 1 {
		return n
	}
	a := int64(align)
	return (n + a - 1) / a * a
}

// Write flashes a prepared image onto one target, independently of any
// other target: mapped chunks only, first MiB last, fsync, then (with
// Verify) every chunk read back and compared. The returned Result carries a
// Failure when the target failed; the target is closed by the caller.
func Write(ctx context.Context, img *Prepared, t Target, o Options) Result {
	res := Result{Target: t.Name(), MappedBytes: img.MappedBytes}
	if o.Retries == 0 {
		o.Retries = 3
	}
	if o.ProgressEvery == 0 {
		o.ProgressEvery = 200 * time.Millisecond
	}
	if c := t.Capacity(); c > 0 && c < img.Size {
		res.Failure = &Failure{Reason: ReasonTooSmall, Offset: -1,
			Detail: fmt.Sprintf("the target holds %s, the image needs %s", HumanBytes(c), HumanBytes(img.Size))}
		return res
	}
	if ft, ok := t.(interface{ EnsureSize(int64) error }); ok {
		if err := ft.EnsureSize(img.Size); err != nil {
			res.Failure = classify(t, err, ReasonWriteError, 0)
			return res
		}
	}
	src, err := os.Open(img.RawPath)
	if err != nil {
		res.Failure = &Failure{Reason: ReasonImage, Offset: -1, Detail: "prepared image missing: " + err.Error(), Err: err}
		return res
	}
	defer src.Close()

	start := time.Now()
	written, f := writePhase(ctx, img, src, t, o)
	res.WrittenBytes = written
	res.WriteTime = time.Since(start)
	if f != nil {
		res.Failure = f
		return res
	}
	if !o.Verify {
		res.VerifyNote = "read-back skipped (--no-verify)"
		return res
	}
	start = time.Now()
	f = verifyPhase(ctx, img, t, o)
	res.VerifyTime = time.Since(start)
	if f != nil {
		res.Failure = f
		return res
	}
	res.Verified = true
	return res
}

// reporter rate-limits progress callbacks.
type reporter struct {
	o     Options
	name  string
	phase string
	total int64
	start time.Time
	last  time.Time
}

func (r *reporter) report(done int64, final bool) {
	if r.o.Progress == nil {
		return
	}
	now := time.Now()
	if !final && now.Sub(r.last) < r.o.ProgressEvery {
		return
	}
	r.last = now
	el := now.Sub(r.start)
	p := Progress{Target: r.name, Phase: r.phase, Done: done, Total: r.total, Elapsed: el}
	if el > 0 {
		p.Rate = float64(done) / el.Seconds()
	}
	if p.Rate > 0 && done < r.total {
		p.ETA = time.Duration(float64(r.total-done) / p.Rate * float64(time.Second))
	}
	r.o.Progress(p)
}

type buffered struct {
	p   piece
	buf []byte
	err error
}

// pipeline reads pieces from src into a small pool of buffers in one
// goroutine while the caller consumes them, so reading the cache and
// writing (or reading the target and hashing) overlap.
func pipeline(ctx context.Context, pieces []piece, bufSize int64, align int, read func(buf []byte, p piece) error) (<-chan buffered, func(buf []byte)) {
	const depth = 3
	free := make(chan []byte, depth)
	for range depth {
		free <- alignedBuffer(int(roundUp(bufSize, align)), align)
	}
	out := make(chan buffered, depth)
	go func() {
		defer close(out)
		for _, p := range pieces {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			err := read(buf, p)
			select {
			case out <- buffered{p, buf, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return out, func(buf []byte) { free <- buf }
}

func writePhase(ctx context.Context, img *Prepared, src *os.File, t Target, o Options) (int64, *Failure) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pieces := writeOrder(img)
	align := t.Align()
	rep := &reporter{o: o, name: t.Name(), phase: "write", total: img.MappedBytes, start: time.Now()}
	in, release := pipeline(ctx, pieces, img.ChunkSize, align, func(buf []byte, p piece) error {
		n := roundUp(p.length, align)
		b := buf[:n]
		got, err := src.ReadAt(b[:p.length], p.off)
		if int64(got) < p.length {
			return fmt.Errorf("read prepared image at %d: %w", p.off, err)
		}
		clear(b[p.length:]) // direct I/O pads the image's last sector with zeros
		return nil
	})
	var written int64
	for b := range in {
		if b.err != nil {
			return written, &Failure{Reason: ReasonImage, Offset: -1, Detail: b.err.Error(), Err: b.err}
		}
		n := roundUp(b.p.length, align)
		if f := writeRetrying(ctx, t, b.buf[:n], b.p.off, o.Retries); f != nil {
			return written, f
		}
		release(b.buf)
		written += b.p.length
		rep.report(written, false)
	}
	if err := ctx.Err(); err != nil {
		return written, &Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: err}
	}
	if err := t.Sync(); err != nil {
		return written, classify(t, err, ReasonWriteError, -1)
	}
	rep.report(written, true)
	return written, nil
}

// transient errors are worth retrying a few times.
func transient(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR)
}

func writeRetrying(ctx context.Context, t Target, b []byte, off int64, retries int) *Failure {
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		_, err := t.WriteAt(b, off)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return &Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: ctx.Err()}
		}
		if !transient(err) || attempt >= retries || t.Gone() {
			return classify(t, err, ReasonWriteError, off)
		}
		if ctxSleep(ctx, wait) != nil {
			return &Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: ctx.Err()}
		}
		wait *= 2
	}
}

// classify names a failure: a target that disappeared is unplugged
// whatever the error said.
func classify(t Target, err error, reason string, off int64) *Failure {
	if t.Gone() || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENXIO) || errors.Is(err, syscall.ENOMEDIUM) {
		return &Failure{Reason: ReasonUnplugged, Offset: -1, Detail: fmt.Sprintf("%s disappeared (%v)", t.Name(), err), Err: err}
	}
	return &Failure{Reason: reason, Offset: off, Detail: err.Error(), Err: err}
}

func verifyPhase(ctx context.Context, img *Prepared, t Target, o Options) *Failure {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := t.DropCache(); err != nil {
		return classify(t, err, ReasonReadError, -1)
	}
	align := t.Align()
	pieces := make([]piece, len(img.Chunks))
	for i, c := range img.Chunks {
		pieces[i] = piece{c.Offset, c.Length}
	}
	rep := &reporter{o: o, name: t.Name(), phase: "verify", total: img.MappedBytes, start: time.Now()}
	in, release := pipeline(ctx, pieces, img.ChunkSize, align, func(buf []byte, p piece) error {
		n := roundUp(p.length, align)
		var err error
		for attempt := 0; attempt <= o.Retries; attempt++ {
			var got int
			got, err = t.ReadAt(buf[:n], p.off)
			if int64(got) >= p.length {
				return nil
			}
			if err == nil || !transient(err) {
				break
			}
		}
		if err == nil {
			err = fmt.Errorf("short read")
		}
		return err
	})
	sums := map[int64]string{}
	for _, c := range img.Chunks {
		sums[c.Offset] = c.SHA256
	}
	var done int64
	var mismatch []int64
	for b := range in {
		if b.err != nil {
			return classify(t, b.err, ReasonReadError, b.p.off)
		}
		h := sha256.Sum256(b.buf[:b.p.length])
		if hex.EncodeToString(h[:]) != sums[b.p.off] {
			mismatch = append(mismatch, b.p.off)
			cancel() // the first bad chunk is what QA needs
		}
		release(b.buf)
		done += b.p.length
		rep.report(done, false)
	}
	if len(mismatch) > 0 {
		sort.Slice(mismatch, func(i, j int) bool { return mismatch[i] < mismatch[j] })
		return &Failure{Reason: ReasonVerify, Offset: mismatch[0],
			Detail: "the target does not hold what was written (bad medium, or another writer)"}
	}
	if err := ctx.Err(); err != nil {
		return &Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: err}
	}
	rep.report(done, true)
	return nil
}

// WriteAll flashes img onto every target at once, each target on its own:
// a slow or failing target never slows or stops another. Results are in
// the order of targets.
func WriteAll(ctx context.Context, img *Prepared, targets []Target, o Options) []Result {
	jobs := make([]Job, len(targets))
	for i, t := range targets {
		jobs[i] = &targetJob{t: t}
	}
	return RunJobs(ctx, img, jobs, o)
}
