package flash

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// OpenFileTarget opens (creating) a regular file target. A path in /dev
// (or leading there through symbolic links) is refused with no-device:
// /dev holds device nodes, and a file made there would pass for a board.
func OpenFileTarget(path string) (*FileTarget, error) {
	abs, resolved, exists, err := resolvePath(path)
	if err != nil {
		return nil, &Failure{Reason: ReasonOpen, Offset: -1, Detail: err.Error(), Err: err}
	}
	if underDev(abs) || underDev(resolved) {
		if err := checkDevNode(path, resolved, exists); err != nil {
			return nil, err
		}
		return nil, &Failure{Reason: ReasonOpen, Offset: -1, Detail: fmt.Sprintf("%s is a block device, not a file target", path)}
	}
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

// WriteQueue is one: writes to one file take its inode's lock, so more in
// flight only spin on it.
func (t *FileTarget) WriteQueue() int { return 1 }

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

// devDir holds device nodes: a target there must be a block device, never
// a file the station makes up (it would be "flashed" and "verified" while
// no board is there).
const devDir = "/dev"

// underDev reports whether an absolute, clean path is in /dev.
func underDev(path string) bool {
	return path == devDir || strings.HasPrefix(path, devDir+"/")
}

// maxSymlinks bounds the links followed when resolving a target (as the
// kernel's ELOOP does).
const maxSymlinks = 40

// resolvePath follows the symbolic links of path, a dangling last one
// included (a missing device behind /dev/disk/by-path, or a lab file
// linking to a /dev node that is not there), and returns the absolute
// path as given, where it leads and whether that exists.
func resolvePath(path string) (abs, resolved string, exists bool, err error) {
	abs, err = filepath.Abs(path)
	if err != nil {
		return "", "", false, fmt.Errorf("target %s: %w", path, err)
	}
	p := abs
	for range maxSymlinks {
		dir, base := filepath.Split(p)
		rd, err := filepath.EvalSymlinks(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return abs, p, false, nil
		}
		if err != nil {
			return abs, p, false, fmt.Errorf("target %s: %w", path, err)
		}
		p = filepath.Join(rd, base)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return abs, p, false, nil
		}
		if err != nil {
			return abs, p, false, fmt.Errorf("target %s: %w", path, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return abs, p, true, nil
		}
		link, err := os.Readlink(p)
		if err != nil {
			return abs, p, false, fmt.Errorf("target %s: %w", path, err)
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(p), link)
		}
		p = filepath.Clean(link)
	}
	return abs, p, false, fmt.Errorf("target %s: too many levels of symbolic links", path)
}

// noDeviceAdvice tells the operator what to do about a missing device.
const noDeviceAdvice = "check the board is plugged in and enumerated as a disk (USB mass-storage mode): `flashstation devices` lists the boards and their disks"

// checkDevNode returns nil when resolved (where spec leads) is a block
// device, and a no-device Failure saying what is there instead.
func checkDevNode(spec, resolved string, exists bool) error {
	where := spec
	if abs, err := filepath.Abs(spec); err == nil && abs != resolved {
		where = fmt.Sprintf("%s (-> %s)", spec, resolved)
	}
	if !exists {
		return &Failure{Reason: ReasonNoDevice, Offset: -1, Detail: fmt.Sprintf("%s does not exist: no device is there; %s", where, noDeviceAdvice)}
	}
	fi, err := os.Stat(resolved)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return &Failure{Reason: ReasonNoDevice, Offset: -1, Detail: fmt.Sprintf("%s does not exist: no device is there; %s", where, noDeviceAdvice), Err: err}
		}
		return &Failure{Reason: ReasonOpen, Offset: -1, Detail: err.Error(), Err: err}
	}
	m := fi.Mode()
	if m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0 {
		return nil
	}
	what, hint := "", ""
	switch {
	case m.IsRegular():
		what, hint = "a regular file", " (left by an earlier write? remove it)"
	case m.IsDir():
		what = "a directory"
	case m&fs.ModeCharDevice != 0:
		what = "a character device"
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	default:
		what = "a special file"
	}
	return &Failure{Reason: ReasonNoDevice, Offset: -1, Detail: fmt.Sprintf("%s is %s, not a block device%s: no board's disk is there; %s", where, what, hint, noDeviceAdvice)}
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
