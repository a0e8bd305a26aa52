package libusb

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// dataChunk bounds one bulk write of download data (the client sends
// 1 MiB pieces; libusb splits a transfer into URBs itself).
const dataChunk = 1 << 20

// fastbootConn is a claimed fastboot interface: a flash.FastbootTransport
// whose every transfer is bounded by its ctx (cancelled through libusb,
// never by closing the interface under it). Close cancels what runs, waits
// for it to return, then releases the interface and the device.
type fastbootConn struct {
	port   string
	dev    Device
	pipe   Pipe
	inMax  int // IN endpoint's max packet size
	outMax int // OUT endpoint's max packet size

	life   context.Context // ends at Close
	cancel context.CancelFunc

	mu      sync.Mutex
	closing bool
	running sync.WaitGroup
	once    sync.Once
	err     error
}

func newFastbootConn(port string, dev Device, pipe Pipe, inMax, outMax int) *fastbootConn {
	life, cancel := context.WithCancel(context.Background())
	return &fastbootConn{port: port, dev: dev, pipe: pipe, inMax: inMax, outMax: outMax, life: life, cancel: cancel}
}

// errConnClosed is a transfer asked for after Close.
var errConnClosed = errors.New("fastboot connection closed")

// begin registers a transfer and returns its context: ctx, ended early by
// Close.
func (f *fastbootConn) begin(ctx context.Context) (context.Context, func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return nil, nil, fmt.Errorf("usb %s: %w", f.port, errConnClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	f.running.Add(1)
	tctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(f.life, cancel)
	return tctx, func() { stop(); cancel(); f.running.Done() }, nil
}

// fail words a transfer's error: ctx's when it ended, the device named.
func (f *fastbootConn) fail(ctx, tctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	case tctx.Err() != nil:
		return fmt.Errorf("usb %s: %w", f.port, errConnClosed)
	}
	return fmt.Errorf("usb %s: %w", f.port, err)
}

// write writes p whole, in pieces of at most chunk bytes.
func (f *fastbootConn) write(ctx context.Context, p []byte, chunk int, zlp bool) error {
	tctx, done, err := f.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	total := len(p)
	for len(p) > 0 {
		n, err := f.pipe.Write(tctx, p[:min(len(p), chunk)])
		p = p[max(n, 0):]
		if err != nil {
			return f.fail(ctx, tctx, err)
		}
		if n <= 0 {
			return f.fail(ctx, tctx, errors.New("bulk write took no bytes"))
		}
	}
	// A transfer that fills its last packet does not end without a
	// zero-length packet: the device would wait for more of the command.
	if zlp && total > 0 && total%f.outMax == 0 {
		if _, err := f.pipe.Write(tctx, nil); err != nil {
			return f.fail(ctx, tctx, fmt.Errorf("zero-length packet: %w", err))
		}
	}
	return nil
}

// Send writes a command as one transfer, ended by a zero-length packet
// when its length is a multiple of the OUT endpoint's packet size.
func (f *fastbootConn) Send(ctx context.Context, p []byte) error {
	return f.write(ctx, p, len(p), true)
}

// SendData writes download data: the device reads exactly the size it
// accepted, so no zero-length packet follows.
func (f *fastbootConn) SendData(ctx context.Context, p []byte) error {
	return f.write(ctx, p, dataChunk, false)
}

// Recv reads one response packet (64 bytes at most; the buffer is a whole
// packet of the IN endpoint so a longer one is an overflow, not a crash).
func (f *fastbootConn) Recv(ctx context.Context) ([]byte, error) {
	tctx, done, err := f.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	buf := make([]byte, max(f.inMax, fastbootRespBytes))
	for {
		n, err := f.pipe.Read(tctx, buf)
		if err != nil {
			return nil, f.fail(ctx, tctx, err)
		}
		// A zero-length packet ends nothing here: the response follows.
		if n > 0 {
			if n > fastbootRespBytes {
				return nil, fmt.Errorf("usb %s: %d-byte fastboot response (64 at most)", f.port, n)
			}
			return buf[:n], nil
		}
	}
}

// Close cancels any running transfer, waits until it has returned, then
// releases the interface and closes the device.
func (f *fastbootConn) Close() error {
	f.once.Do(func() {
		f.mu.Lock()
		f.closing = true
		f.mu.Unlock()
		f.cancel()
		f.running.Wait()
		f.err = f.pipe.Close()
		if err := f.dev.Close(); f.err == nil {
			f.err = err
		}
	})
	return f.err
}
