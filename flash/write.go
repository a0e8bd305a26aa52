package flash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
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
	ReasonNoDevice   = "no-device"       // a /dev target is missing or not a block device
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
	// InFlight is how many chunk reads or writes a target has in flight at
	// once (default 4): media and USB bridges that queue commands go
	// faster, the others lose nothing. Each costs one chunk of memory.
	InFlight int
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

// writeOrder splits the mapped chunks into what is written first
// (everything from 1 MiB on) and what is written last (the first MiB), so a
// half-written board never boots.
func writeOrder(img *Prepared) (first, last []piece) {
	const bootArea = 1 << 20
	for _, c := range img.Chunks {
		off, end := c.Offset, c.Offset+c.Length
		if off < bootArea {
			cut := min(end, bootArea)
			last = append(last, piece{off, cut - off})
			off = cut
		}
		if off < end {
			first = append(first, piece{off, end - off})
		}
	}
	return first, last
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
	if o.InFlight <= 0 {
		o.InFlight = 4
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
	res.WrittenBytes, res.Failure = writePhase(ctx, img, src, t, o)
	res.WriteTime = time.Since(start)
	if res.Failure != nil {
		return res
	}
	if !o.Verify {
		res.VerifyNote = "read-back skipped (--no-verify)"
		return res
	}
	// Read back after fsync, with any cached pages dropped, so the reads
	// reach the medium. (Reading each chunk while the next ones are written
	// was measured slower: the reads and writes contend on one queue.)
	start = time.Now()
	if err := t.DropCache(); err != nil {
		res.Failure = classify(t, err, ReasonReadError, -1)
		return res
	}
	all := make(chan int, len(img.Chunks))
	for i := range img.Chunks {
		all <- i
	}
	close(all)
	res.Failure = verifyChunks(ctx, img, t, o, all)
	res.VerifyTime = time.Since(start)
	res.Verified = res.Failure == nil
	return res
}

// reporter rate-limits progress callbacks.
type reporter struct {
	o     Options
	name  string
	phase string
	total int64
	start time.Time
	mu    sync.Mutex
	last  time.Time
}

func (r *reporter) report(done int64, final bool) {
	if r.o.Progress == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
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

// forPieces runs do on every piece with n workers, each with its own
// aligned buffer; the first failure stops the others.
func forPieces(ctx context.Context, pieces []piece, n int, bufSize int64, align int,
	do func(ctx context.Context, buf []byte, p piece) *Failure) *Failure {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan piece)
	var once sync.Once
	var first *Failure
	var wg sync.WaitGroup
	for range min(n, max(len(pieces), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := alignedBuffer(int(roundUp(bufSize, align)), align)
			for p := range next {
				if f := do(ctx, buf, p); f != nil {
					once.Do(func() { first = f; cancel() })
				}
			}
		}()
	}
feed:
	for _, p := range pieces {
		select {
		case next <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return first
}

// writePhase writes the mapped pieces, the first MiB last, then fsyncs.
func writePhase(ctx context.Context, img *Prepared, src *os.File, t Target, o Options) (int64, *Failure) {
	first, last := writeOrder(img)
	align := t.Align()
	rep := &reporter{o: o, name: t.Name(), phase: "write", total: img.MappedBytes, start: time.Now()}
	var written atomic.Int64
	do := func(ctx context.Context, buf []byte, p piece) *Failure {
		n := roundUp(p.length, align)
		b := buf[:n]
		got, err := src.ReadAt(b[:p.length], p.off)
		if int64(got) < p.length {
			return &Failure{Reason: ReasonImage, Offset: -1, Detail: fmt.Sprintf("read prepared image at %d: %v", p.off, err), Err: err}
		}
		clear(b[p.length:]) // direct I/O pads the image's last sector with zeros
		if f := writeRetrying(ctx, t, b, p.off, o.Retries); f != nil {
			return f
		}
		rep.report(written.Add(p.length), false)
		return nil
	}
	for _, group := range [][]piece{first, last} {
		if f := forPieces(ctx, group, o.InFlight, img.ChunkSize, align, do); f != nil {
			return written.Load(), f
		}
		if err := ctx.Err(); err != nil {
			return written.Load(), &Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: err}
		}
	}
	if err := t.Sync(); err != nil {
		return written.Load(), classify(t, err, ReasonWriteError, -1)
	}
	rep.report(written.Load(), true)
	return written.Load(), nil
}

// verifyChunks reads back the chunks whose indices arrive on ready and
// compares their SHA-256, with InFlight readers. A mismatch does not stop
// the others: the lowest bad offset is reported.
func verifyChunks(ctx context.Context, img *Prepared, t Target, o Options, ready <-chan int) *Failure {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	align := t.Align()
	rep := &reporter{o: o, name: t.Name(), phase: "verify", total: img.MappedBytes, start: time.Now()}
	var done atomic.Int64
	var mu sync.Mutex
	var fatal, mismatch *Failure
	var wg sync.WaitGroup
	for range o.InFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := alignedBuffer(int(roundUp(img.ChunkSize, align)), align)
			for i := range ready {
				if ctx.Err() != nil {
					continue // drain
				}
				f := verifyChunk(ctx, t, img.Chunks[i], buf, align, o.Retries)
				mu.Lock()
				switch {
				case f == nil:
				case f.Reason == ReasonVerify:
					if mismatch == nil || f.Offset < mismatch.Offset {
						mismatch = f
					}
				case fatal == nil:
					fatal = f
					cancel()
				}
				mu.Unlock()
				if f == nil {
					rep.report(done.Add(img.Chunks[i].Length), false)
				}
			}
		}()
	}
	wg.Wait()
	switch {
	case fatal != nil:
		return fatal
	case mismatch != nil:
		return mismatch
	case ctx.Err() != nil:
		return &Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: ctx.Err()}
	}
	rep.report(done.Load(), true)
	return nil
}

func verifyChunk(ctx context.Context, t Target, c Chunk, buf []byte, align, retries int) *Failure {
	n := roundUp(c.Length, align)
	var err error
	for attempt := 0; attempt <= retries; attempt++ {
		var got int
		got, err = t.ReadAt(buf[:n], c.Offset)
		if int64(got) >= c.Length {
			err = nil
			break
		}
		if err == nil {
			err = fmt.Errorf("short read")
		}
		if !transient(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return classify(t, err, ReasonReadError, c.Offset)
	}
	h := sha256.Sum256(buf[:c.Length])
	if hex.EncodeToString(h[:]) != c.SHA256 {
		return &Failure{Reason: ReasonVerify, Offset: c.Offset,
			Detail: "the target does not hold what was written (bad medium, or another writer)"}
	}
	return nil
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
