// Package libusbtest plays back recorded libusb calls for the usb/libusb
// adapter, in the way of periph.io's conntest: a Playback is a
// libusb.Backend that expects the adapter's calls one after another
// (opens, control requests, bulk writes byte for byte, closes) and answers
// each with what was recorded; a call out of order or with other bytes is
// an error the test reports. A Recorder wraps a real backend and writes
// what it sees in the same script form (WriteScript), so a session on a
// real bench becomes a test's playback.
package libusbtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/flashstation/flashstation/usb/libusb"
)

// Kind is the libusb call an Op stands for.
type Kind string

// The calls.
const (
	Open      Kind = "open"       // Backend.Open of Dev
	Control   Kind = "control"    // Device.Control
	Claim     Kind = "claim"      // Device.Claim
	Write     Kind = "write"      // Pipe.Write (bulk OUT)
	Read      Kind = "read"       // Pipe.Read (bulk IN)
	ClosePipe Kind = "close-pipe" // Pipe.Close: the interface released
	CloseDev  Kind = "close"      // Device.Close
)

// An Op is one expected call and its answer.
type Op struct {
	Kind Kind
	Dev  string // the device's port path, as 1-1.2

	// Control: the request.
	RequestType, Request uint8
	Value, Index         uint16
	// Claim: the interface and endpoints.
	Intf, Alt, In, Out int

	// Write: the bytes the adapter must write (or Len and Sum, for
	// download data); Read and a device-to-host Control: the bytes
	// played back.
	Data []byte
	Len  int
	Sum  *[sha256.Size]byte

	// Taken: a Write that fails takes this many bytes first (a board
	// pulled mid-download).
	Taken int
	// Err is returned by the call (after Taken bytes).
	Err error
	// Hang: the call blocks until its ctx ends, then fails with
	// libusb.ErrCancelled (a hung board; a Control hangs for its timeout
	// and fails with libusb.ErrTimeout).
	Hang bool
}

func (o Op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", o.Kind, o.Dev)
	switch o.Kind {
	case Control:
		fmt.Fprintf(&b, " type=%#02x req=%d value=%#04x index=%d", o.RequestType, o.Request, o.Value, o.Index)
	case Claim:
		fmt.Fprintf(&b, " if=%d alt=%d in=%d out=%d", o.Intf, o.Alt, o.In, o.Out)
	case Write, Read:
		if o.Sum != nil {
			fmt.Fprintf(&b, " len=%d sha256=%x", o.Len, o.Sum[:])
		} else {
			fmt.Fprintf(&b, " %q", o.Data)
		}
	}
	return b.String()
}

// Playback is a libusb.Backend that plays Ops back in order.
type Playback struct {
	// Devices are the devices on the bus, by port path.
	Devices map[string]libusb.DeviceDesc
	Ops     []Op

	mu      sync.Mutex
	pos     int
	errs    []error
	running int // transfers in flight
	closed  bool
	open    map[string]int // devices open, by port path
	changed chan struct{}  // closed and renewed at each call
}

var _ libusb.Backend = (*Playback)(nil)

// next takes the next op, which must be of kind on dev; a mismatch is
// recorded and returned as an error.
func (p *Playback) next(kind Kind, dev string, match func(Op) error) (Op, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.notify()
	if p.closed {
		return Op{}, p.fail(fmt.Errorf("%s %s after the backend was closed", kind, dev))
	}
	if p.pos >= len(p.Ops) {
		return Op{}, p.fail(fmt.Errorf("%s %s: no more calls expected", kind, dev))
	}
	op := p.Ops[p.pos]
	if op.Kind != kind || op.Dev != dev {
		return Op{}, p.fail(fmt.Errorf("call %d: got %s %s, want %s", p.pos+1, kind, dev, op))
	}
	if match != nil {
		if err := match(op); err != nil {
			return Op{}, p.fail(fmt.Errorf("call %d (%s): %w", p.pos+1, op, err))
		}
	}
	p.pos++
	return op, nil
}

func (p *Playback) notify() {
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

func (p *Playback) fail(err error) error {
	p.errs = append(p.errs, err)
	return err
}

// Err returns every mismatch so far, and the calls still expected.
func (p *Playback) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := append([]error(nil), p.errs...)
	if p.pos < len(p.Ops) {
		errs = append(errs, fmt.Errorf("%d calls never made, the first: %s", len(p.Ops)-p.pos, p.Ops[p.pos]))
	}
	for dev, n := range p.open {
		if n > 0 {
			errs = append(errs, fmt.Errorf("device %s left open", dev))
		}
	}
	return errors.Join(errs...)
}

// Done says how many calls were made.
func (p *Playback) Done() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pos
}

// WaitFor blocks until n calls were made or ctx ends: a test waits on the
// call that proves the state (a transfer under way), never on time.
func (p *Playback) WaitFor(ctx context.Context, n int) error {
	for {
		p.mu.Lock()
		if p.pos >= n {
			p.mu.Unlock()
			return nil
		}
		if p.changed == nil {
			p.changed = make(chan struct{})
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for call %d (%d made): %w", n, p.Done(), ctx.Err())
		}
	}
}

// Open opens a device in Devices.
func (p *Playback) Open(bus int, ports []int) (libusb.Device, error) {
	dev := portPath(bus, ports)
	op, err := p.next(Open, dev, nil)
	if err != nil {
		return nil, err
	}
	if op.Err != nil {
		return nil, op.Err
	}
	desc, ok := p.Devices[dev]
	if !ok {
		return nil, p.locked(func() error {
			return p.fail(fmt.Errorf("open %s: the script opens a device it does not describe", dev))
		})
	}
	p.locked(func() error {
		if p.open == nil {
			p.open = map[string]int{}
		}
		p.open[dev]++
		return nil
	})
	return &device{p: p, dev: dev, desc: desc}, nil
}

func (p *Playback) locked(f func() error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return f()
}

// Close closes the backend.
func (p *Playback) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

func portPath(bus int, ports []int) string {
	s := make([]string, len(ports))
	for i, n := range ports {
		s[i] = fmt.Sprint(n)
	}
	return fmt.Sprintf("%d-%s", bus, strings.Join(s, "."))
}

type device struct {
	p      *Playback
	dev    string
	desc   libusb.DeviceDesc
	closed bool
}

func (d *device) Desc() libusb.DeviceDesc { return d.desc }

func (d *device) Control(rType, request uint8, value, index uint16, data []byte, timeout time.Duration) (int, error) {
	op, err := d.p.next(Control, d.dev, func(op Op) error {
		if op.RequestType != rType || op.Request != request || op.Value != value || op.Index != index {
			return fmt.Errorf("got type=%#02x req=%d value=%#04x index=%d", rType, request, value, index)
		}
		if rType&0x80 == 0 && !bytes.Equal(op.Data, data) {
			return fmt.Errorf("got data %x", data)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if op.Hang {
		t := time.NewTimer(timeout)
		<-t.C
		return 0, libusb.ErrTimeout
	}
	if op.Err != nil {
		return 0, op.Err
	}
	if rType&0x80 != 0 {
		return copy(data, op.Data), nil
	}
	return len(data), nil
}

func (d *device) Claim(intf, alt, in, out int) (libusb.Pipe, error) {
	op, err := d.p.next(Claim, d.dev, func(op Op) error {
		if op.Intf != intf || op.Alt != alt || op.In != in || op.Out != out {
			return fmt.Errorf("got if=%d alt=%d in=%d out=%d", intf, alt, in, out)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if op.Err != nil {
		return nil, op.Err
	}
	return &pipe{d: d}, nil
}

func (d *device) Close() error {
	if _, err := d.p.next(CloseDev, d.dev, nil); err != nil {
		return err
	}
	return d.p.locked(func() error {
		if d.closed {
			return d.p.fail(fmt.Errorf("device %s closed twice", d.dev))
		}
		d.closed = true
		d.p.open[d.dev]--
		return nil
	})
}

type pipe struct {
	d      *device
	closed bool
}

// transfer runs one bulk op; its in-flight count catches a Close under it.
func (x *pipe) transfer(ctx context.Context, kind Kind, match func(Op) error) (Op, error) {
	op, err := x.d.p.next(kind, x.d.dev, func(op Op) error {
		if x.closed {
			return errors.New("a transfer on a released interface")
		}
		if match != nil {
			return match(op)
		}
		return nil
	})
	if err != nil {
		return op, err
	}
	if op.Hang {
		x.d.p.locked(func() error { x.d.p.running++; return nil })
		<-ctx.Done()
		x.d.p.locked(func() error { x.d.p.running--; return nil })
		return op, fmt.Errorf("%w (%v)", libusb.ErrCancelled, ctx.Err())
	}
	return op, nil
}

func (x *pipe) Write(ctx context.Context, b []byte) (int, error) {
	op, err := x.transfer(ctx, Write, func(op Op) error {
		want := op.Data
		if op.Taken > 0 || op.Err != nil || op.Hang {
			return nil // a failing write: its bytes are not compared
		}
		if op.Sum != nil {
			if len(b) != op.Len || sha256.Sum256(b) != *op.Sum {
				return fmt.Errorf("got %d bytes, sha256 %x", len(b), sha256.Sum256(b))
			}
			return nil
		}
		if !bytes.Equal(b, want) {
			return fmt.Errorf("got %q", b)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if op.Err != nil {
		return min(op.Taken, len(b)), op.Err
	}
	return len(b), nil
}

func (x *pipe) Read(ctx context.Context, b []byte) (int, error) {
	op, err := x.transfer(ctx, Read, nil)
	if err != nil {
		return 0, err
	}
	if op.Err != nil {
		return 0, op.Err
	}
	if len(op.Data) > len(b) {
		return 0, x.d.p.locked(func() error {
			return x.d.p.fail(fmt.Errorf("read %s: a %d-byte buffer for a %d-byte packet (overflow)", x.d.dev, len(b), len(op.Data)))
		})
	}
	return copy(b, op.Data), nil
}

func (x *pipe) Close() error {
	if _, err := x.d.p.next(ClosePipe, x.d.dev, nil); err != nil {
		return err
	}
	return x.d.p.locked(func() error {
		if x.d.p.running > 0 {
			return x.d.p.fail(fmt.Errorf("interface of %s released under a running transfer", x.d.dev))
		}
		x.closed = true
		return nil
	})
}
