package flash

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
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
	ReasonPrepare    = "prepare-error"   // the station could not prepare the image (its cache disk)
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
	Phase   string  // "write", "verify", "download" (fastboot), "flash"
	Done    int64   // bytes of this phase
	Total   int64   // 0 while a streamed image's size is not known yet
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
	// InFlight is how many reads or writes of up to 1 MiB a target has in
	// flight at once (default 4; writes to a regular file, one): media and
	// USB bridges that queue commands go faster, the others lose nothing.
	// Writes come straight from the cached image; each read-back takes a
	// buffer from Buffers.
	InFlight int
	// Buffers is the read-back buffers' pool, shared by the targets of
	// WriteAll and RunJobs; nil: one of InFlight buffers per target.
	Buffers *BufferPool
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

// piece is one write or read: at most ioPiece bytes of a chunk.
type piece struct{ off, length int64 }

// bootArea is the start of a disk (partition table, boot loader) that is
// written last, once the rest is on the target and the whole image has
// passed its checks, so a half-written board never boots.
const bootArea = 1 << 20

// split cuts a chunk into pieces, apart at the boot area's end.
func split(c Chunk) []piece {
	var out []piece
	for off, end := c.Offset, c.Offset+c.Length; off < end; {
		n := min(end-off, ioPiece)
		if off < bootArea {
			n = min(n, bootArea-off)
		}
		out = append(out, piece{off, n})
		off += n
	}
	return out
}

// chunkAt returns the image's i-th chunk, waiting for it while the image
// fills; ok is false past the last one (err: why the fill failed).
func (p *Prepared) chunkAt(ctx context.Context, i int) (Chunk, bool, error) {
	if p.fill != nil {
		return p.fill.chunk(ctx, i)
	}
	if i < len(p.Chunks) {
		return p.Chunks[i], true, nil
	}
	return Chunk{}, false, nil
}

// windows maps the image's cache file: the one its targets share, or a
// new one for an image made elsewhere.
func (p *Prepared) windows() (*windows, error) {
	if p.win != nil {
		return p.win, nil
	}
	f, err := os.Open(p.RawPath)
	if err != nil {
		return nil, err
	}
	return newWindows(f), nil
}

// roundUp rounds n up to a multiple of align.
func roundUp(n int64, align int) int64 {
	if align <= 1 {
		return n
	}
	a := int64(align)
	return (n + a - 1) / a * a
}

// Write flashes an image onto one target, independently of any other
// target: mapped chunks only, first MiB last, fsync, then (with Verify)
// every mapped byte read back and compared with the cached image. An image
// Open returned while it is being prepared is streamed: each chunk is
// written as it reaches the cache, the boot area once the whole image has
// passed its checks; if it fails them, the target's boot area is cleared
// (when anything was written) and the target fails image-refused. The
// returned Result carries a Failure when the target failed; the target is
// closed by the caller.
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
	if o.Buffers == nil {
		o.Buffers = NewBufferPool(o.InFlight)
	}
	if f := checkSize(t, img.Size); f != nil {
		res.Failure = f
		return res
	}
	win, err := img.windows()
	if err != nil {
		res.Failure = &Failure{Reason: ReasonImage, Offset: -1, Detail: "prepared image missing: " + err.Error(), Err: err}
		return res
	}
	w := &writer{t: t, o: o, win: win, align: t.Align()}
	start := time.Now()
	final, written, f := w.writePhase(ctx, img)
	res.WrittenBytes, res.WriteTime, res.Failure = written, time.Since(start), f
	if final != nil {
		res.MappedBytes = final.MappedBytes
	} else if res.MappedBytes == 0 {
		res.MappedBytes = img.estimate
	}
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
	res.Failure = w.verify(ctx, final)
	res.VerifyTime = time.Since(start)
	res.Verified = res.Failure == nil
	return res
}

// checkSize refuses a target smaller than an image of size bytes (0:
// not known yet), and grows a file target to it.
func checkSize(t Target, size int64) *Failure {
	if size <= 0 {
		return nil
	}
	if c := t.Capacity(); c > 0 && c < size {
		return &Failure{Reason: ReasonTooSmall, Offset: -1,
			Detail: fmt.Sprintf("the target holds %s, the image needs %s", HumanBytes(c), HumanBytes(size))}
	}
	if ft, ok := t.(interface{ EnsureSize(int64) error }); ok {
		if err := ft.EnsureSize(size); err != nil {
			return classify(t, err, ReasonWriteError, 0)
		}
	}
	return nil
}

// writer writes one image onto one target.
type writer struct {
	t     Target
	o     Options
	win   *windows
	align int
}

// reporter rate-limits progress callbacks.
type reporter struct {
	o     Options
	name  string
	phase string
	start time.Time
	mu    sync.Mutex
	total int64
	last  time.Time
}

func (r *reporter) setTotal(n int64) {
	r.mu.Lock()
	r.total = n
	r.mu.Unlock()
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
	if p.Total > 0 && done > p.Total {
		p.Total = done // an estimate, passed
	}
	if el > 0 {
		p.Rate = float64(done) / el.Seconds()
	}
	if p.Rate > 0 && done < r.total {
		p.ETA = time.Duration(float64(r.total-done) / p.Rate * float64(time.Second))
	}
	r.o.Progress(p)
}

// forPieces runs do on every piece from next with n workers; the first
// failure stops the others (next's sender must watch ctx).
func forPieces(ctx context.Context, cancel context.CancelFunc, next <-chan piece, n int, do func(ctx context.Context, p piece) *Failure) *Failure {
	var once sync.Once
	var first *Failure
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range next {
				if ctx.Err() != nil {
					continue // drain
				}
				if f := safely(p, do, ctx); f != nil {
					once.Do(func() { first = f; cancel() })
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// safely runs do, turning a fault on the mapped cache file (truncated
// under the station's feet) into a failure rather than a crash.
func safely(p piece, do func(ctx context.Context, p piece) *Failure, ctx context.Context) (f *Failure) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			f = &Failure{Reason: ReasonImage, Offset: -1, Detail: fmt.Sprintf("the prepared image changed while it was being flashed (at %d): %v", p.off, r)}
		}
	}()
	return do(ctx, p)
}

// send feeds pieces to workers until ctx ends.
func send(ctx context.Context, next chan<- piece, pieces []piece) bool {
	for _, p := range pieces {
		select {
		case next <- p:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// writePhase writes the mapped pieces as the image provides them, then,
// once the image is complete and checked, its boot area, then fsyncs.
func (w *writer) writePhase(ctx context.Context, img *Prepared) (final *Prepared, written int64, f *Failure) {
	inFlight := w.o.InFlight
	if q, ok := w.t.(interface{ WriteQueue() int }); ok {
		inFlight = max(1, min(inFlight, q.WriteQueue()))
	}
	total := img.MappedBytes
	if img.Filling() || total == 0 {
		total = img.estimate
	}
	rep := &reporter{o: w.o, name: w.t.Name(), phase: "write", total: total, start: time.Now()}
	var count atomic.Int64
	do := func(ctx context.Context, p piece) *Failure {
		if f := w.writePiece(ctx, p); f != nil {
			return f
		}
		rep.report(count.Add(p.length), false)
		return nil
	}

	// Everything but the boot area, as it comes.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan piece)
	var boot []piece
	var fillErr error
	go func() {
		defer close(next)
		for i := 0; ; i++ {
			c, ok, err := img.chunkAt(wctx, i)
			if err == nil && ok {
				err = img.checkChunk(w.win, i)
			}
			if !ok || err != nil {
				fillErr = err
				return
			}
			var rest []piece
			for _, p := range split(c) {
				if p.off < bootArea {
					boot = append(boot, p)
				} else {
					rest = append(rest, p)
				}
			}
			if !send(wctx, next, rest) {
				return
			}
		}
	}()
	// A target that took part of the image and fails must not boot
	// whatever it held before with part of this over it.
	fail := func(f *Failure) (*Prepared, int64, *Failure) {
		if written > 0 && f.Reason != ReasonUnplugged && !w.t.Gone() && w.clearBootArea(ctx) {
			f.Detail += fmt.Sprintf("; %s had been written: the target's boot area was cleared so it cannot boot", HumanBytes(written))
		}
		return nil, written, f
	}
	f = forPieces(wctx, cancel, next, inFlight, do)
	written = count.Load()
	if f != nil {
		return fail(f)
	}
	if err := ctx.Err(); err != nil {
		return fail(&Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: err})
	}
	final, err := img.Wait(ctx)
	if err == nil {
		err = fillErr
	}
	if err != nil {
		return fail(imageFailure(ctx, err, written))
	}
	rep.setTotal(final.MappedBytes)
	if f := checkSize(w.t, final.Size); f != nil {
		return fail(f)
	}

	// The boot area last.
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	bnext := make(chan piece)
	go func() {
		defer close(bnext)
		send(bctx, bnext, boot)
	}()
	f = forPieces(bctx, bcancel, bnext, inFlight, do)
	written = count.Load()
	if f != nil {
		return fail(f)
	}
	if err := ctx.Err(); err != nil {
		return fail(&Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: err})
	}
	if err := w.t.Sync(); err != nil {
		return nil, written, classify(w.t, err, ReasonWriteError, -1)
	}
	rep.report(written, true)
	return final, written, nil
}

// imageFailure says why the image a target was taking failed: refused
// (its checks), stopped (the preparation's context), or the station's own
// trouble preparing it (its cache disk).
func imageFailure(ctx context.Context, err error, written int64) *Failure {
	switch {
	case ctx.Err() != nil:
		return &Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: err}
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return &Failure{Reason: ReasonCancelled, Offset: -1, Detail: "the image's preparation was stopped", Err: err}
	case errors.Is(err, ErrImageRefused):
		d := err.Error()
		if written == 0 {
			d += "; nothing was written to the target"
		}
		return &Failure{Reason: ReasonImage, Offset: -1, Detail: d, Err: err}
	}
	return &Failure{Reason: ReasonPrepare, Offset: -1, Detail: err.Error(), Err: err}
}

// clearBootArea zeroes the start of a target that took part of an image
// and failed: whatever it booted before, it must not boot now. It reports
// whether the target took it (best effort: a failing target may not).
func (w *writer) clearBootArea(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	n := roundUp(bootArea, w.align)
	if c := w.t.Capacity(); c > 0 {
		n = min(n, c)
	}
	buf := alignedBuffer(int(n), max(w.align, 1))
	if writeRetrying(ctx, w.t, buf, 0, 0) != nil {
		return false
	}
	return w.t.Sync() == nil
}

// writePiece writes one piece straight from the mapped cache, or through
// a pooled buffer when direct I/O cannot take the mapping as it is (a
// short last sector).
func (w *writer) writePiece(ctx context.Context, p piece) *Failure {
	data, err := w.win.acquire(p)
	if err != nil {
		return &Failure{Reason: ReasonImage, Offset: -1, Detail: err.Error(), Err: err}
	}
	defer w.win.release(p)
	if !w.aligned(data) {
		buf, err := w.o.Buffers.get(ctx)
		if err != nil {
			return &Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: err}
		}
		defer w.o.Buffers.put(buf)
		n := roundUp(p.length, w.align)
		copy(buf, data)
		clear(buf[p.length:n]) // direct I/O pads the image's last sector with zeros
		data = buf[:n]
	}
	f := writeRetrying(ctx, w.t, data, p.off, w.o.Retries)
	if f != nil && errors.Is(f.Err, syscall.EFAULT) {
		// The kernel could not read the mapped cache: the file shrank.
		return &Failure{Reason: ReasonImage, Offset: -1, Detail: fmt.Sprintf("the prepared image changed while it was being flashed (at %d): %v", p.off, f.Err), Err: f.Err}
	}
	return f
}

func (w *writer) aligned(b []byte) bool {
	if w.align <= 1 {
		return true
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%uintptr(w.align) == 0 && len(b)%w.align == 0
}

// verify reads every mapped piece back with InFlight readers and compares
// it with the cached image (checked when the cache was filled). A mismatch
// does not stop the others: the lowest bad offset is reported.
func (w *writer) verify(ctx context.Context, img *Prepared) *Failure {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rep := &reporter{o: w.o, name: w.t.Name(), phase: "verify", total: img.MappedBytes, start: time.Now()}
	var done atomic.Int64
	var mu sync.Mutex
	var mismatch *Failure
	next := make(chan piece)
	go func() {
		defer close(next)
		for _, c := range img.Chunks {
			if !send(ctx, next, split(c)) {
				return
			}
		}
	}()
	fatal := forPieces(ctx, cancel, next, w.o.InFlight, func(ctx context.Context, p piece) *Failure {
		f := w.verifyPiece(ctx, p)
		if f != nil && f.Reason == ReasonVerify {
			mu.Lock()
			if mismatch == nil || f.Offset < mismatch.Offset {
				mismatch = f
			}
			mu.Unlock()
			return nil
		}
		if f == nil {
			rep.report(done.Add(p.length), false)
		}
		return f
	})
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

func (w *writer) verifyPiece(ctx context.Context, p piece) *Failure {
	buf, err := w.o.Buffers.get(ctx)
	if err != nil {
		return &Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: err}
	}
	defer w.o.Buffers.put(buf)
	n := roundUp(p.length, w.align)
	for attempt := 0; attempt <= w.o.Retries; attempt++ {
		var got int
		got, err = w.t.ReadAt(buf[:n], p.off)
		if int64(got) >= p.length {
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
		return classify(w.t, err, ReasonReadError, p.off)
	}
	want, err := w.win.acquire(p)
	if err != nil {
		return &Failure{Reason: ReasonImage, Offset: -1, Detail: err.Error(), Err: err}
	}
	defer w.win.release(p)
	if got := buf[:p.length]; !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		return &Failure{Reason: ReasonVerify, Offset: p.off + int64(i),
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
