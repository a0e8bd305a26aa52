package libusbtest

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/flashstation/flashstation/usb/libusb"
)

// Recorder is a libusb.Backend that passes every call to a real one and
// keeps it as an Op, answers included: on a real bench, a session through
// a Recorder, written with WriteScript, is a Playback for the tests.
type Recorder struct {
	B libusb.Backend

	mu      sync.Mutex
	ops     []Op
	devices map[string]libusb.DeviceDesc
}

var _ libusb.Backend = (*Recorder)(nil)

// Ops returns the calls so far, and the devices they opened.
func (r *Recorder) Ops() ([]Op, map[string]libusb.DeviceDesc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	devs := make(map[string]libusb.DeviceDesc, len(r.devices))
	for k, v := range r.devices {
		devs[k] = v
	}
	return append([]Op(nil), r.ops...), devs
}

func (r *Recorder) add(op Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
}

// Open records an open.
func (r *Recorder) Open(bus int, ports []int) (libusb.Device, error) {
	dev := portPath(bus, ports)
	d, err := r.B.Open(bus, ports)
	r.add(Op{Kind: Open, Dev: dev, Err: err})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.devices == nil {
		r.devices = map[string]libusb.DeviceDesc{}
	}
	r.devices[dev] = d.Desc()
	r.mu.Unlock()
	return &recDevice{r: r, dev: dev, d: d}, nil
}

// Close closes the real backend.
func (r *Recorder) Close() error { return r.B.Close() }

type recDevice struct {
	r   *Recorder
	dev string
	d   libusb.Device
}

func (d *recDevice) Desc() libusb.DeviceDesc { return d.d.Desc() }

func (d *recDevice) Control(rType, request uint8, value, index uint16, data []byte, timeout time.Duration) (int, error) {
	n, err := d.d.Control(rType, request, value, index, data, timeout)
	op := Op{Kind: Control, Dev: d.dev, RequestType: rType, Request: request, Value: value, Index: index, Err: err}
	if n > 0 || rType&0x80 == 0 {
		op.Data = append([]byte(nil), data[:max(n, 0)]...)
	}
	d.r.add(op)
	return n, err
}

func (d *recDevice) Claim(intf, alt, in, out int) (libusb.Pipe, error) {
	p, err := d.d.Claim(intf, alt, in, out)
	d.r.add(Op{Kind: Claim, Dev: d.dev, Intf: intf, Alt: alt, In: in, Out: out, Err: err})
	if err != nil {
		return nil, err
	}
	return &recPipe{d: d, p: p}, nil
}

func (d *recDevice) Close() error {
	err := d.d.Close()
	d.r.add(Op{Kind: CloseDev, Dev: d.dev})
	return err
}

type recPipe struct {
	d *recDevice
	p libusb.Pipe
}

func (x *recPipe) Write(ctx context.Context, b []byte) (int, error) {
	n, err := x.p.Write(ctx, b)
	op := Op{Kind: Write, Dev: x.d.dev, Err: err}
	switch {
	case err != nil:
		op.Taken, op.Len = n, len(b)
	case len(b) > 64:
		sum := sha256.Sum256(b)
		op.Len, op.Sum = len(b), &sum
	default:
		op.Data = append([]byte{}, b...)
	}
	x.d.r.add(op)
	return n, err
}

func (x *recPipe) Read(ctx context.Context, b []byte) (int, error) {
	n, err := x.p.Read(ctx, b)
	x.d.r.add(Op{Kind: Read, Dev: x.d.dev, Data: append([]byte{}, b[:max(n, 0)]...), Err: err})
	return n, err
}

func (x *recPipe) Close() error {
	err := x.p.Close()
	x.d.r.add(Op{Kind: ClosePipe, Dev: x.d.dev})
	return err
}
