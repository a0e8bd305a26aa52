package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"

	"github.com/flashstation/flashstation/usb"
)

// Port is an open serial console. Read may return (0, nil) when nothing
// came within a read timeout (go.bug.st/serial ports do); it returns
// ErrUnplugged when the adapter went away, and returns when Close is
// called from another goroutine.
type Port interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Close() error
}

// ErrUnplugged is a port whose adapter went away.
var ErrUnplugged = errors.New("console unplugged")

// PortError is a port that cannot be opened, with a reason code.
type PortError struct {
	Reason string // ReasonPortBusy, ReasonPortMissing, ReasonPortPermission, ReasonPort
	Path   string
	Err    error
}

func (e *PortError) Error() string {
	hint := ""
	switch e.Reason {
	case ReasonPortBusy:
		hint = " (in use by another program or slot; brltty and ModemManager grab USB serial adapters)"
	case ReasonPortMissing:
		hint = " (is the console adapter plugged in?)"
	case ReasonPortPermission:
		hint = " (add the station's user to the dialout group)"
	}
	return fmt.Sprintf("console %s: %v%s", e.Path, e.Err, hint)
}

func (e *PortError) Unwrap() error { return e.Err }

// Opener opens a console port at a baud rate (8N1).
type Opener func(path string, baud int) (Port, error)

// ResolvePort turns a slot's console setting into a device path: a /dev
// path (by-id and by-path links included) as is, or the USB port path of
// the adapter.
func ResolvePort(name string) (string, error) {
	if usb.ValidPortPath(name) || (len(name) > 0 && name[0] != '/' && usb.ValidPortPath(portOnly(name))) {
		return usb.System.SerialOnPort(name)
	}
	return name, nil
}

func portOnly(s string) string {
	for i, c := range s {
		if c == ':' {
			return s[:i]
		}
	}
	return s
}

// locks keeps one user per port in this process; the flock on the
// device node keeps one across processes (root bypasses TIOCEXCL).
var (
	locksMu sync.Mutex
	locks   = map[string]bool{}
)

func lockPath(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	locksMu.Lock()
	defer locksMu.Unlock()
	if locks[real] {
		return "", fmt.Errorf("already open in this station")
	}
	locks[real] = true
	return real, nil
}

func unlockPath(real string) {
	locksMu.Lock()
	delete(locks, real)
	locksMu.Unlock()
}

// serialPort is a console opened and configured by go.bug.st/serial,
// written through it, and read through a second descriptor of the same
// device that Go's poller (epoll) serves. go.bug.st/serial's Read calls
// select() per read: it costs a blocked thread per port and panics for a
// descriptor number of 1024 or more, which a 64-slot station can reach.
// The second descriptor also holds the cross-process lock.
type serialPort struct {
	p    serial.Port
	rd   *os.File
	real string
	once sync.Once
}

// OpenSerial opens a serial device with go.bug.st/serial: 8N1 at baud,
// reads timing out after 100 ms, locked against other users.
func OpenSerial(path string, baud int) (Port, error) {
	dev, err := ResolvePort(path)
	if err != nil {
		return nil, &PortError{Reason: ReasonPortMissing, Path: path, Err: err}
	}
	real, err := lockPath(dev)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, &PortError{Reason: ReasonPortMissing, Path: path, Err: err}
		}
		return nil, &PortError{Reason: ReasonPortBusy, Path: path, Err: err}
	}
	lockFile, err := os.OpenFile(real, os.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err == nil {
		if ferr := unix.Flock(int(lockFile.Fd()), unix.LOCK_EX|unix.LOCK_NB); ferr != nil {
			lockFile.Close()
			unlockPath(real)
			return nil, &PortError{Reason: ReasonPortBusy, Path: path, Err: fmt.Errorf("locked by another process")}
		}
	} else {
		unlockPath(real)
		return nil, portOpenError(path, err)
	}
	p, err := serial.Open(real, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		lockFile.Close()
		unlockPath(real)
		return nil, portOpenError(path, err)
	}
	return &serialPort{p: p, rd: lockFile, real: real}, nil
}

func portOpenError(path string, err error) error {
	var pe *serial.PortError
	switch {
	case errors.As(err, &pe) && pe.Code() == serial.PortBusy, errors.Is(err, syscall.EBUSY):
		return &PortError{Reason: ReasonPortBusy, Path: path, Err: err}
	case errors.As(err, &pe) && pe.Code() == serial.PermissionDenied, errors.Is(err, os.ErrPermission):
		return &PortError{Reason: ReasonPortPermission, Path: path, Err: err}
	case errors.As(err, &pe) && pe.Code() == serial.PortNotFound, errors.Is(err, os.ErrNotExist):
		return &PortError{Reason: ReasonPortMissing, Path: path, Err: err}
	}
	return &PortError{Reason: ReasonPort, Path: path, Err: err}
}

// Read blocks until bytes arrive, the adapter goes away or the port is
// closed (Capture closes it when its context ends).
func (s *serialPort) Read(b []byte) (int, error) {
	n, err := s.rd.Read(b)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return n, nil
	case errors.Is(err, io.EOF), errors.Is(err, syscall.EIO), errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.ENODEV),
		errors.Is(err, os.ErrClosed):
		// A USB adapter pulled out reads as end of file; a pty whose
		// far end closed, as EIO.
		return n, ErrUnplugged
	}
	return n, err
}

func (s *serialPort) Write(b []byte) (int, error) { return s.p.Write(b) }

func (s *serialPort) Close() error {
	var err error
	s.once.Do(func() {
		err = s.p.Close()
		s.rd.Close()
		unlockPath(s.real)
	})
	return err
}

// Capture reads a console into chunks: opened at start, reopened with
// back-off after an unplug (each gap reported as a chunk), recorded in a
// transcript. It is the only reader of its port.
type Capture struct {
	Path       string
	Baud       int
	Open       Opener      // default OpenSerial
	Transcript *Transcript // optional
	// Reopen is the back-off between reopen attempts (default 250 ms,
	// doubling to 5 s); GiveUp ends the capture when the adapter stays
	// away that long (default: never, the boot's timeouts decide).
	Reopen time.Duration
	GiveUp time.Duration
	// Batch is how long to let bytes gather after a read that returned
	// some (default 30 ms): at 115200 baud that turns ~180 reads a second
	// into ~30, for a marker seen at most Batch later.
	Batch time.Duration

	mu   sync.Mutex
	port Port
}

// Start opens the port, so that a missing or busy port is reported before
// anything else.
func (c *Capture) Start() error {
	if c.Open == nil {
		c.Open = OpenSerial
	}
	if c.Baud == 0 {
		c.Baud = 115200
	}
	p, err := c.Open(c.Path, c.Baud)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.port = p
	c.mu.Unlock()
	return nil
}

// Write sends bytes to the board (recorded in the transcript).
func (c *Capture) Write(p []byte) error {
	c.mu.Lock()
	port := c.port
	c.mu.Unlock()
	if port == nil {
		return ErrUnplugged
	}
	if _, err := port.Write(p); err != nil {
		return err
	}
	if c.Transcript != nil {
		c.Transcript.Sent(p)
	}
	return nil
}

// WriteSecret sends a secret; the transcript records [redacted].
func (c *Capture) WriteSecret(p []byte, echo []byte) error {
	c.mu.Lock()
	port := c.port
	c.mu.Unlock()
	if port == nil {
		return ErrUnplugged
	}
	if _, err := port.Write(p); err != nil {
		return err
	}
	if c.Transcript != nil {
		c.Transcript.Sent(echo)
	}
	return nil
}

// Run reads until ctx ends or the port is gone for good, sending chunks
// to out (closed on return).
func (c *Capture) Run(ctx context.Context, out chan<- Chunk) error {
	defer close(out)
	defer func() {
		c.mu.Lock()
		if c.port != nil {
			c.port.Close()
			c.port = nil
		}
		c.mu.Unlock()
	}()
	if c.Reopen == 0 {
		c.Reopen = 250 * time.Millisecond
	}
	if c.Batch == 0 {
		c.Batch = 30 * time.Millisecond
	}
	// Ending the context closes the port, which ends a blocked Read.
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		if c.port != nil {
			c.port.Close()
		}
		c.mu.Unlock()
	})
	defer stop()
	buf := make([]byte, 4096)
	send := func(ch Chunk) bool {
		select {
		case out <- ch:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		c.mu.Lock()
		port := c.port
		c.mu.Unlock()
		if port == nil {
			return nil
		}
		n, err := port.Read(buf)
		now := time.Now()
		if n > 0 {
			data := append([]byte(nil), buf[:n]...)
			if c.Transcript != nil {
				c.Transcript.Received(now, data)
			}
			if !send(Chunk{At: now, Data: data}) {
				return ctx.Err()
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			if n > 0 && n < len(buf) {
				time.Sleep(c.Batch) // let bytes gather: fewer reads, same data
			}
			continue
		}
		if !errors.Is(err, ErrUnplugged) {
			return err
		}
		// The adapter went away: mark the gap and wait for it to return.
		port.Close()
		c.mu.Lock()
		c.port = nil
		c.mu.Unlock()
		if c.Transcript != nil {
			c.Transcript.Mark(now, "console disconnected")
		}
		if !send(Chunk{At: now, Gap: "console disconnected"}) {
			return ctx.Err()
		}
		if err := c.reopen(ctx); err != nil {
			return err
		}
		now = time.Now()
		if c.Transcript != nil {
			c.Transcript.Mark(now, "console reconnected")
		}
		if !send(Chunk{At: now, Gap: "console reconnected"}) {
			return ctx.Err()
		}
	}
}

func (c *Capture) reopen(ctx context.Context) error {
	wait := c.Reopen
	start := time.Now()
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		p, err := c.Open(c.Path, c.Baud)
		if err == nil {
			c.mu.Lock()
			c.port = p
			c.mu.Unlock()
			return nil
		}
		if c.GiveUp > 0 && time.Since(start) > c.GiveUp {
			return fmt.Errorf("%w: %v", ErrUnplugged, err)
		}
		wait = min(wait*2, 5*time.Second)
	}
}
