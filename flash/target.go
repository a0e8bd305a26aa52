package flash

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Target is a random-access destination: a block device (a board's eMMC
// in USB mass-storage mode) or a regular file.
type Target interface {
	Name() string
	// Capacity is the size in bytes; 0 for a regular file, which grows.
	Capacity() int64
	// Align is the I/O alignment direct I/O needs (buffer address, offset
	// and length), 0 when any will do.
	Align() int
	WriteAt(p []byte, off int64) (int, error)
	ReadAt(p []byte, off int64) (int, error)
	Sync() error
	// DropCache makes the next reads come from the medium, not memory.
	DropCache() error
	// Gone reports whether the target has disappeared (unplugged).
	Gone() bool
	Close() error
}

// FileTarget is a regular file target. A file shorter than the image is
// extended first, so unwritten (unmapped) ranges read as zeros.
type FileTarget struct {
	f    *os.File
	path string
}

// OpenFileTarget opens (creating) a regular file target.
func OpenFileTarget(path string) (*FileTarget, error) {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, &Failure{Reason: ReasonOpen, Offset: -1, Detail: fmt.Sprintf("%s is not a regular file", path)}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, &Failure{Reason: ReasonOpen, Offset: -1, Detail: err.Error(), Err: err}
	}
	return &FileTarget{f: f, path: path}, nil
}

func (t *FileTarget) Name() string                             { return t.path }
func (t *FileTarget) Capacity() int64                          { return 0 }
func (t *FileTarget) Align() int                               { return 0 }
func (t *FileTarget) WriteAt(p []byte, off int64) (int, error) { return t.f.WriteAt(p, off) }
func (t *FileTarget) ReadAt(p []byte, off int64) (int, error)  { return t.f.ReadAt(p, off) }
func (t *FileTarget) Sync() error                              { return t.f.Sync() }
func (t *FileTarget) Close() error                             { return t.f.Close() }

// Gone reports whether the file was removed.
func (t *FileTarget) Gone() bool {
	fi, err := t.f.Stat()
	if err != nil {
		return true
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 0
}

// DropCache evicts the file's pages so read-back reads the disk.
func (t *FileTarget) DropCache() error {
	return unix.Fadvise(int(t.f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// EnsureSize extends the file to at least size bytes.
func (t *FileTarget) EnsureSize(size int64) error {
	fi, err := t.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < size {
		return t.f.Truncate(size)
	}
	return nil
}

// Throttled limits a target's throughput, standing in for a slow medium
// (an SD card, a slow-clocked eMMC, a board sharing a hub) in labs, the
// simulated bench and benchmarks.
type Throttled struct {
	Target
	bytesPerSec float64

	mu    sync.Mutex
	start time.Time
	bytes int64
}

// Throttle wraps t so that reads and writes together go no faster than
// bytesPerSec.
func Throttle(t Target, bytesPerSec float64) *Throttled {
	return &Throttled{Target: t, bytesPerSec: bytesPerSec}
}

func (t *Throttled) pace(n int) {
	t.mu.Lock()
	if t.start.IsZero() {
		t.start = time.Now()
	}
	t.bytes += int64(n)
	due := t.start.Add(time.Duration(float64(t.bytes) / t.bytesPerSec * float64(time.Second)))
	t.mu.Unlock()
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}

func (t *Throttled) WriteAt(p []byte, off int64) (int, error) {
	n, err := t.Target.WriteAt(p, off)
	t.pace(n)
	return n, err
}

func (t *Throttled) ReadAt(p []byte, off int64) (int, error) {
	n, err := t.Target.ReadAt(p, off)
	t.pace(n)
	return n, err
}

// alignedBuffer returns a buffer of n bytes whose address is a multiple of
// align (direct I/O needs it).
func alignedBuffer(n, align int) []byte {
	if align <= 1 {
		return make([]byte, n)
	}
	b := make([]byte, n+align)
	shift := (align - int(uintptr(unsafe.Pointer(&b[0]))%uintptr(align))) % align
	return b[shift : shift+n : shift+n]
}

// ctxSleep sleeps or returns early when ctx ends.
func ctxSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
