package flash

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// FastbootTransport carries fastboot packets: a command or a piece of
// download data out, a response packet in. Every call is bounded by its
// ctx: when ctx ends the call returns (an error wrapping ctx.Err()) and
// the transport is left open, so its owner closes it when no call runs
// (the USB one never releases an interface under a running transfer).
type FastbootTransport interface {
	// Send writes one command as one transfer (on USB ended by a
	// zero-length packet when its length is a multiple of the endpoint's
	// packet size, so the device sees where it ends).
	Send(ctx context.Context, p []byte) error
	// SendData writes a piece of download data: the device reads exactly
	// the size it accepted (DATA), so nothing ends a piece (on USB a
	// zero-length packet there would reach the device as an empty
	// command once the download is complete).
	SendData(ctx context.Context, p []byte) error
	// Recv reads one response packet.
	Recv(ctx context.Context) ([]byte, error)
	Close() error
}

// ErrDeviceGone is wrapped by a transport's error when the device left
// the bus (or its connection dropped): the board was pulled or reset.
var ErrDeviceGone = errors.New("the device went away")

// FastbootError is a FAIL answer.
type FastbootError struct {
	Command string
	Message string
}

func (e *FastbootError) Error() string {
	return fmt.Sprintf("fastboot %s: FAILED (%s)", e.Command, e.Message)
}

// TimeoutError is an exchange the device did not finish within the
// client's Timeout: a hung bootloader. It wraps
// context.DeadlineExceeded.
type TimeoutError struct {
	Command string
	Step    string // "command", "response" or "data"
	Timeout time.Duration
}

func (e *TimeoutError) Error() string {
	what := map[string]string{"command": "take the command", "response": "answer", "data": "take download data"}[e.Step]
	return fmt.Sprintf("fastboot %s: the device did not %s within %s (hung)", e.Command, what, e.Timeout)
}

func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// tcpTransport is fastboot over TCP: after the FB01 handshake every packet
// in either direction is an 8-byte big-endian length and the payload.
type tcpTransport struct {
	conn net.Conn
}

// maxFastbootPacket bounds a response packet read from a device.
const maxFastbootPacket = 64 << 10

// DialFastbootTCP connects to a fastboot device over TCP (port 5554 by
// default) and performs the handshake.
func DialFastbootTCP(ctx context.Context, addr string) (FastbootTransport, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "5554")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fastboot tcp %s: %w", addr, err)
	}
	t := &tcpTransport{conn: conn}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = t.bound(hctx, func() error {
		if _, err := conn.Write([]byte("FB01")); err != nil {
			return err
		}
		var hs [4]byte
		if _, err := io.ReadFull(conn, hs[:]); err != nil {
			return err
		}
		if string(hs[:2]) != "FB" {
			return fmt.Errorf("%q is not a fastboot device", hs[:])
		}
		if v, err := strconv.Atoi(string(hs[2:])); err != nil || v < 1 {
			return fmt.Errorf("bad version %q", hs[2:])
		}
		return nil
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("fastboot handshake: %w", err)
	}
	return t, nil
}

// bound runs one exchange on the connection under ctx: its deadline
// becomes the connection's, and its end interrupts the exchange (the
// connection stays open). An error after ctx ended wraps ctx.Err().
func (t *tcpTransport) bound(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dl, _ := ctx.Deadline() // zero: no deadline
	_ = t.conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = t.conn.SetDeadline(time.Unix(1, 0)) })
	err := f()
	if !stop() {
		// The interruption ran (or runs): the error is ctx's.
		if err != nil {
			return fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
	}
	if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err)) {
		return fmt.Errorf("%w: %v", ErrDeviceGone, err)
	}
	if !dl.IsZero() && errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}

func (t *tcpTransport) Send(ctx context.Context, p []byte) error {
	return t.bound(ctx, func() error {
		var hdr [8]byte
		binary.BigEndian.PutUint64(hdr[:], uint64(len(p)))
		if _, err := t.conn.Write(hdr[:]); err != nil {
			return err
		}
		_, err := t.conn.Write(p)
		return err
	})
}

// SendData is Send: TCP frames every packet.
func (t *tcpTransport) SendData(ctx context.Context, p []byte) error { return t.Send(ctx, p) }

func (t *tcpTransport) Recv(ctx context.Context) ([]byte, error) {
	var p []byte
	err := t.bound(ctx, func() error {
		var hdr [8]byte
		if _, err := io.ReadFull(t.conn, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint64(hdr[:])
		if n > maxFastbootPacket {
			return fmt.Errorf("fastboot: %d-byte response packet", n)
		}
		p = make([]byte, n)
		_, err := io.ReadFull(t.conn, p)
		return err
	})
	return p, err
}

func (t *tcpTransport) Close() error { return t.conn.Close() }

// FastbootClient speaks the fastboot protocol over a transport.
type FastbootClient struct {
	t FastbootTransport
	// Timeout bounds each exchange: sending a command, each response
	// packet (INFO and TEXT keep a slow device's command alive), each
	// piece of download data (default 2 min: a device may take long to
	// write a large piece before it answers OKAY).
	Timeout time.Duration
	Info    func(string) // receives INFO and TEXT messages
}

// NewFastbootClient wraps a transport.
func NewFastbootClient(t FastbootTransport) *FastbootClient {
	return &FastbootClient{t: t, Timeout: 2 * time.Minute}
}

// Close closes the transport.
func (c *FastbootClient) Close() error { return c.t.Close() }

// exchange runs one send or receive under its own deadline, Timeout from
// now; a deadline of the client's (not ctx's) becomes a TimeoutError.
func (c *FastbootClient) exchange(ctx context.Context, cmd, step string, f func(context.Context) error) error {
	ectx, cancel := ctx, context.CancelFunc(func() {})
	if c.Timeout > 0 {
		ectx, cancel = context.WithTimeout(ctx, c.Timeout)
	}
	defer cancel()
	err := f(ectx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("fastboot %s: %w (%v)", cmd, ctx.Err(), err)
	}
	// A transport's own deadline may fire a moment before its ctx's timer
	// marks the ctx done: the clock decides whose deadline it was.
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return fmt.Errorf("fastboot %s: %w (%v)", cmd, context.DeadlineExceeded, err)
	}
	if ectx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return &TimeoutError{Command: cmd, Step: step, Timeout: c.Timeout}
	}
	return fmt.Errorf("fastboot %s: %w", cmd, err)
}

// send sends a command, or a piece of download data.
func (c *FastbootClient) send(ctx context.Context, cmd, step string, p []byte) error {
	return c.exchange(ctx, cmd, step, func(ctx context.Context) error {
		if step == "data" {
			return c.t.SendData(ctx, p)
		}
		return c.t.Send(ctx, p)
	})
}

// response reads packets until OKAY, FAIL or DATA.
func (c *FastbootClient) response(ctx context.Context, cmd string) (kind, payload string, err error) {
	for {
		var p []byte
		err := c.exchange(ctx, cmd, "response", func(ctx context.Context) (err error) {
			p, err = c.t.Recv(ctx)
			return err
		})
		if err != nil {
			return "", "", err
		}
		if len(p) < 4 {
			return "", "", fmt.Errorf("fastboot %s: short response %q", cmd, p)
		}
		kind, payload := string(p[:4]), string(p[4:])
		switch kind {
		case "INFO", "TEXT":
			if c.Info != nil {
				c.Info(payload)
			}
		case "OKAY", "DATA":
			return kind, payload, nil
		case "FAIL":
			return kind, payload, &FastbootError{Command: cmd, Message: payload}
		default:
			return "", "", fmt.Errorf("fastboot %s: unknown response %q", cmd, p)
		}
	}
}

// Command sends a command and returns the OKAY payload.
func (c *FastbootClient) Command(ctx context.Context, cmd string) (string, error) {
	if len(cmd) > 4096 {
		return "", fmt.Errorf("fastboot command too long")
	}
	if err := c.send(ctx, cmd, "command", []byte(cmd)); err != nil {
		return "", err
	}
	kind, payload, err := c.response(ctx, cmd)
	if err != nil {
		return "", err
	}
	if kind != "OKAY" {
		return "", fmt.Errorf("fastboot %s: unexpected %s", cmd, kind)
	}
	return payload, nil
}

// GetVar reads a device variable.
func (c *FastbootClient) GetVar(ctx context.Context, name string) (string, error) {
	return c.Command(ctx, "getvar:"+name)
}

// Download sends size bytes produced by write into the device's download
// buffer. progress gets the bytes sent so far.
func (c *FastbootClient) Download(ctx context.Context, size int64, write func(io.Writer) error, progress func(int64)) error {
	cmd := fmt.Sprintf("download:%08x", size)
	if err := c.send(ctx, cmd, "command", []byte(cmd)); err != nil {
		return err
	}
	kind, payload, err := c.response(ctx, cmd)
	if err != nil {
		return err
	}
	if kind != "DATA" {
		return fmt.Errorf("fastboot %s: want DATA, got %s", cmd, kind)
	}
	if n, err := strconv.ParseInt(payload, 16, 64); err != nil || n != size {
		return fmt.Errorf("fastboot %s: device accepts %q bytes", cmd, payload)
	}
	pw := &packetWriter{c: c, cmd: cmd, progress: progress, ctx: ctx}
	if err := write(pw); err != nil {
		return err
	}
	if err := pw.flush(); err != nil {
		return err
	}
	if pw.sent != size {
		return fmt.Errorf("fastboot %s: sent %d bytes", cmd, pw.sent)
	}
	kind, _, err = c.response(ctx, cmd)
	if err != nil {
		return err
	}
	if kind != "OKAY" {
		return fmt.Errorf("fastboot %s: unexpected %s after data", cmd, kind)
	}
	return nil
}

// packetWriter sends download data in 1 MiB packets.
type packetWriter struct {
	c        *FastbootClient
	cmd      string
	ctx      context.Context
	buf      []byte
	sent     int64
	progress func(int64)
}

const fastbootDataPacket = 1 << 20

func (w *packetWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, fastbootDataPacket)
		}
		k := min(len(p), fastbootDataPacket-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == fastbootDataPacket {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (w *packetWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if err := w.c.send(w.ctx, w.cmd, "data", w.buf); err != nil {
		return err
	}
	w.sent += int64(len(w.buf))
	w.buf = w.buf[:0]
	if w.progress != nil {
		w.progress(w.sent)
	}
	return nil
}

// ParseSize reads a fastboot size variable ("0x20000000" or decimal).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		return strconv.ParseInt(s[2:], 16, 64)
	}
	return strconv.ParseInt(s, 10, 64)
}

// FastbootFlashOptions configure FlashFastboot.
type FastbootFlashOptions struct {
	Partition string // default mmc0
	Name      string // target name in results and progress
	Options
}

// FlashFastboot writes a prepared image to a fastboot device's partition
// as Android sparse pieces sized by its max-download-size: only the mapped
// ranges are sent. Fastboot cannot read the partition back, so the result
// says so instead of claiming a verification.
func FlashFastboot(ctx context.Context, img *Prepared, c *FastbootClient, o FastbootFlashOptions) Result {
	if o.Partition == "" {
		o.Partition = "mmc0"
	}
	// Fastboot sends the image as sparse pieces planned from its whole
	// map: a streamed image is waited for.
	full, err := img.Wait(ctx)
	if err != nil {
		reason := ReasonImage
		if ctx.Err() != nil {
			reason = ReasonCancelled
		}
		return Result{Target: o.Name, Failure: &Failure{Reason: reason, Offset: -1, Detail: err.Error() + "; nothing was sent to the device", Err: err}}
	}
	img = full
	if win, err := img.windows(); err == nil {
		for i := range img.Chunks {
			if err := img.checkChunk(win, i); err != nil {
				return Result{Target: o.Name, Failure: &Failure{Reason: ReasonImage, Offset: -1, Detail: err.Error() + "; nothing was sent to the device", Err: err}}
			}
		}
	}
	res := Result{Target: o.Name, MappedBytes: img.MappedBytes,
		VerifyNote: "device-side verification not available (fastboot cannot read the partition back)"}
	fail := func(err error) Result {
		var fe *FastbootError
		switch {
		case ctx.Err() != nil:
			res.Failure = &Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: err}
		case errors.As(err, &fe):
			res.Failure = &Failure{Reason: ReasonFastboot, Offset: -1, Detail: fe.Error(), Err: err}
		case errors.Is(err, ErrDeviceGone) || errors.Is(err, net.ErrClosed):
			res.Failure = &Failure{Reason: ReasonUnplugged, Offset: -1, Detail: err.Error(), Err: err}
		default:
			res.Failure = &Failure{Reason: ReasonFastboot, Offset: -1, Detail: err.Error(), Err: err}
		}
		return res
	}
	maxDL := int64(64 << 20)
	if v, err := c.GetVar(ctx, "max-download-size"); err == nil {
		if n, err := ParseSize(v); err == nil && n > 0 {
			maxDL = n
		}
	} else if !isFastbootFail(err) {
		return fail(err)
	}
	if v, err := c.GetVar(ctx, "partition-size:"+o.Partition); err == nil {
		if n, err := ParseSize(v); err == nil && n > 0 && n < img.Size {
			res.Failure = &Failure{Reason: ReasonTooSmall, Offset: -1,
				Detail: fmt.Sprintf("partition %s holds %s, the image needs %s", o.Partition, HumanBytes(n), HumanBytes(img.Size))}
			return res
		}
	} else if !isFastbootFail(err) {
		return fail(err)
	}
	pieces, err := PlanSparse(img, maxDL)
	if err != nil {
		return fail(err)
	}
	src, err := os.Open(img.RawPath)
	if err != nil {
		res.Failure = &Failure{Reason: ReasonImage, Offset: -1, Detail: err.Error(), Err: err}
		return res
	}
	defer src.Close()
	start := time.Now()
	rep := &reporter{o: o.Options, name: o.Name, phase: "write", total: img.MappedBytes, start: start}
	var sentRaw int64
	for _, p := range pieces {
		size := p.Size()
		base := sentRaw
		err := c.Download(ctx, size, func(w io.Writer) error {
			_, err := p.WriteTo(w, src, img.Size)
			return err
		}, func(n int64) {
			rep.report(min(base+n*p.RawBytes/size, img.MappedBytes), false)
		})
		if err != nil {
			return fail(err)
		}
		if _, err := c.Command(ctx, "flash:"+o.Partition); err != nil {
			return fail(err)
		}
		sentRaw += p.RawBytes
	}
	res.WrittenBytes = min(sentRaw, img.MappedBytes)
	res.WriteTime = time.Since(start)
	rep.report(res.WrittenBytes, true)
	return res
}

func isFastbootFail(err error) bool {
	var fe *FastbootError
	return errors.As(err, &fe)
}

func isConnReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}
