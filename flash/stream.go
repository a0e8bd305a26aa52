package flash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// filling is a preparation in progress, shared by the targets that stream
// the image's first flash: the chunks in the cache file so far, published
// in order, and at the end the complete image or why it was refused.
//
// A published chunk's bytes are in the cache file (its page cache), so a
// target may write them at once; they are not checked yet (the bmap's
// range checksums, the file's SHA-256 are known only at the end), which
// is why targets write the boot area only once the fill has succeeded.
type filling struct {
	file    *os.File // the cache file, open for the process's life: targets map it
	wantSHA string   // the file hash the preparation checks ("": none)

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at each publish and at the end
	chunks  []Chunk       // published, in order (SHA256 not set yet)
	done    bool
	final   *Prepared
	err     error
}

func newFill(file *os.File) *filling {
	return &filling{file: file, changed: make(chan struct{})}
}

func (f *filling) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// publish makes a chunk available to the targets.
func (f *filling) publish(c Chunk) {
	f.mu.Lock()
	f.chunks = append(f.chunks, c)
	f.notify()
	f.mu.Unlock()
}

// finish ends the fill with the complete image, or err.
func (f *filling) finish(img *Prepared, err error) {
	f.mu.Lock()
	f.done, f.final, f.err = true, img, err
	f.notify()
	f.mu.Unlock()
}

// chunk waits for the i-th published chunk. ok is false once the fill has
// ended with fewer chunks (err is then its error, nil when it succeeded),
// or when ctx ends (err is ctx's).
func (f *filling) chunk(ctx context.Context, i int) (c Chunk, ok bool, err error) {
	for {
		f.mu.Lock()
		if i < len(f.chunks) {
			c = f.chunks[i]
			f.mu.Unlock()
			return c, true, nil
		}
		if f.done {
			err = f.err
			f.mu.Unlock()
			return Chunk{}, false, err
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Chunk{}, false, ctx.Err()
		}
	}
}

// wait returns the complete image once the fill has ended.
func (f *filling) wait(ctx context.Context) (*Prepared, error) {
	for {
		f.mu.Lock()
		if f.done {
			defer f.mu.Unlock()
			return f.final, f.err
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Filling reports whether the image is still being prepared: Write then
// streams it, writing each chunk as it reaches the cache.
func (p *Prepared) Filling() bool {
	if p.fill == nil {
		return false
	}
	p.fill.mu.Lock()
	defer p.fill.mu.Unlock()
	return !p.fill.done
}

// Streamed reports whether the image was being prepared when Open
// returned it (whether it still is or not).
func (p *Prepared) Streamed() bool { return p.fill != nil }

// Wait returns the complete image: p itself when it was prepared already,
// else the preparation's outcome once it ends (an ErrImageRefused error
// when the image failed its checks).
func (p *Prepared) Wait(ctx context.Context) (*Prepared, error) {
	if p.fill == nil {
		return p, nil
	}
	return p.fill.wait(ctx)
}

// windows maps pieces of a prepared image's cache file, read-only, for
// the targets to write from and compare against without copying them.
// Targets working on the same piece share its mapping, so a bench of
// boards in step maps each piece once.
type windows struct {
	file *os.File

	mu   sync.Mutex
	open map[piece]*window
}

type window struct {
	mem  []byte // the mapping, from a page boundary
	data []byte // the piece's bytes in it
	refs int
}

func newWindows(file *os.File) *windows {
	return &windows{file: file, open: map[piece]*window{}}
}

// acquire maps p's bytes; release them with release(p). The mapping is
// made outside the lock: a piece read from disk does not hold up the
// targets that want others.
func (w *windows) acquire(p piece) ([]byte, error) {
	w.mu.Lock()
	if win, ok := w.open[p]; ok {
		win.refs++
		w.mu.Unlock()
		return win.data, nil
	}
	w.mu.Unlock()
	page := int64(os.Getpagesize())
	start := p.off / page * page
	length := p.off + p.length - start
	mem, err := unix.Mmap(int(w.file.Fd()), start, int(length), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("map the prepared image at %d: %w", p.off, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if win, ok := w.open[p]; ok { // mapped meanwhile by another target
		win.refs++
		_ = unix.Munmap(mem)
		return win.data, nil
	}
	win := &window{mem: mem, data: mem[p.off-start : p.off-start+p.length], refs: 1}
	w.open[p] = win
	return win.data, nil
}

func (w *windows) release(p piece) {
	w.mu.Lock()
	defer w.mu.Unlock()
	win, ok := w.open[p]
	if !ok {
		return
	}
	if win.refs--; win.refs == 0 {
		delete(w.open, p)
		_ = unix.Munmap(win.mem)
	}
}

// ioPiece is the most a target reads or writes at once: small enough
// that a target's I/Os in flight stay a few MiB, large enough for any
// medium's queue (USB mass storage splits requests far smaller).
const ioPiece = 1 << 20

// BufferPool is a bounded set of aligned buffers the targets of a flash
// share for their read-back: however many targets, the memory for I/O
// stays what the pool holds. Get blocks while every buffer is in use.
type BufferPool struct {
	free chan []byte
	mu   sync.Mutex
	made int
	max  int
}

// NewBufferPool returns a pool of at most n buffers of ioPiece bytes.
func NewBufferPool(n int) *BufferPool {
	return &BufferPool{free: make(chan []byte, max(n, 1)), max: max(n, 1)}
}

// get returns a buffer, waiting for one while all are in use.
func (bp *BufferPool) get(ctx context.Context) ([]byte, error) {
	select {
	case b := <-bp.free:
		return b, nil
	default:
	}
	bp.mu.Lock()
	if bp.made < bp.max {
		bp.made++
		bp.mu.Unlock()
		return alignedBuffer(ioPiece, 4096), nil
	}
	bp.mu.Unlock()
	select {
	case b := <-bp.free:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (bp *BufferPool) put(b []byte) {
	bp.free <- b[:cap(b)]
}

// chunkChecks checks, once per chunk and for every target, that an image
// loaded from the cache still holds what its manifest says: a cache file
// damaged on disk is never flashed and then "verified" against itself.
type chunkChecks struct {
	dir  string // the cache entry, set aside when damaged
	once []sync.Once
	errs []error
}

func newChunkChecks(dir string, n int) *chunkChecks {
	return &chunkChecks{dir: dir, once: make([]sync.Once, n), errs: make([]error, n)}
}

// check hashes chunk i of img through win, the first time it is asked.
func (cc *chunkChecks) check(img *Prepared, win *windows, i int) error {
	cc.once[i].Do(func() {
		c := img.Chunks[i]
		h := sha256.New()
		for _, p := range split(c) {
			data, err := win.acquire(p)
			if err != nil {
				cc.errs[i] = err
				return
			}
			h.Write(data)
			win.release(p)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != c.SHA256 {
			// Set aside: the next Open prepares the image again.
			aside := fmt.Sprintf("%s.damaged-%d", cc.dir, time.Now().Unix())
			_ = os.Rename(cc.dir, aside)
			cc.errs[i] = fmt.Errorf("%w: the prepared image in the cache is damaged (bytes %d-%d no longer match their SHA-256; the cache disk?): set aside as %s, flash again to prepare it anew",
				ErrImageRefused, c.Offset, c.Offset+c.Length-1, aside)
		}
	})
	return cc.errs[i]
}

// checkChunk checks chunk i of an image loaded from the cache (nil for
// one prepared in this process: its chunks were hashed as they were
// written).
func (p *Prepared) checkChunk(win *windows, i int) error {
	if p.checks == nil {
		return nil
	}
	return p.checks.check(p, win, i)
}
