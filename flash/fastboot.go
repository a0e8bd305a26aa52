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
// download data out, a response packet in.
type FastbootTransport interface {
	Send(p []byte) error
	Recv() ([]byte, error)
	Close() error
}

// FastbootError is a FAIL answer.
type FastbootError struct {
	Command string
	Message string
}

func (e *FastbootError) Error() string {
	return fmt.Sprintf("fastboot %s: FAILED (%s)", e.Command, e.Message)
}

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
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("FB01")); err != nil {
		conn.Close()
		return nil, fmt.Errorf("fastboot handshake: %w", err)
	}
	var hs [4]byte
	if _, err := io.ReadFull(conn, hs[:]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("fastboot handshake: %w", err)
	}
	if string(hs[:2]) != "FB" {
		conn.Close()
		return nil, fmt.Errorf("fastboot handshake: %q is not a fastboot device", hs[:])
	}
	if v, err := strconv.Atoi(string(hs[2:])); err != nil || v < 1 {
		conn.Close()
		return nil, fmt.Errorf("fastboot handshake: bad version %q", hs[2:])
	}
	_ = conn.SetDeadline(time.Time{})
	return &tcpTransport{conn: conn}, nil
}

func (t *tcpTransport) Send(p []byte) error {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(len(p)))
	if _, err := t.conn.Write(hdr[:]); err != nil {
		return err
	}
	_, err := t.conn.Write(p)
	return err
}

func (t *tcpTransport) Recv() ([]byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(t.conn, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint64(hdr[:])
	if n > maxFastbootPacket {
		return nil, fmt.Errorf("fastboot: %d-byte response packet", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(t.conn, p)
	return p, err
}

func (t *tcpTransport) Close() error { return t.conn.Close() }

// SetDeadline lets the client bound each exchange.
func (t *tcpTransport) SetDeadline(d time.Time) error { return t.conn.SetDeadline(d) }

// FastbootClient speaks the fastboot protocol over a transport.
type FastbootClient struct {
	t FastbootTransport
	// Timeout bounds each packet exchange (default 2 min: a device may
	// take long to write a large piece before it answers OKAY).
	Timeout time.Duration
	Info    func(string) // receives INFO and TEXT messages
}

// NewFastbootClient wraps a transport.
func NewFastbootClient(t FastbootTransport) *FastbootClient {
	return &FastbootClient{t: t, Timeout: 2 * time.Minute}
}

// refresh pushes the transport's deadline Timeout into the future.
func (c *FastbootClient) refresh() {
	if d, ok := c.t.(interface{ SetDeadline(time.Time) error }); ok && c.Timeout > 0 {
		_ = d.SetDeadline(time.Now().Add(c.Timeout))
	}
}

// Close closes the transport.
func (c *FastbootClient) Close() error { return c.t.Close() }

// watch closes the transport when ctx ends, unblocking a read.
func (c *FastbootClient) watch(ctx context.Context) func() {
	c.refresh()
	stop := context.AfterFunc(ctx, func() { c.t.Close() })
	return func() { stop() }
}

// response reads packets until OKAY, FAIL or DATA.
func (c *FastbootClient) response(cmd string) (kind, payload string, err error) {
	for {
		c.refresh()
		p, err := c.t.Recv()
		if err != nil {
			return "", "", fmt.Errorf("fastboot %s: %w", cmd, err)
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
	defer c.watch(ctx)()
	if err := c.t.Send([]byte(cmd)); err != nil {
		return "", fmt.Errorf("fastboot %s: %w", cmd, ctxErr(ctx, err))
	}
	kind, payload, err := c.response(cmd)
	if err != nil {
		return "", ctxErr(ctx, err)
	}
	if kind != "OKAY" {
		return "", fmt.Errorf("fastboot %s: unexpected %s", cmd, kind)
	}
	return payload, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// GetVar reads a device variable.
func (c *FastbootClient) GetVar(ctx context.Context, name string) (string, error) {
	return c.Command(ctx, "getvar:"+name)
}

// Download sends size bytes produced by write into the device's download
// buffer. progress gets the bytes sent so far.
func (c *FastbootClient) Download(ctx context.Context, size int64, write func(io.Writer) error, progress func(int64)) error {
	defer c.watch(ctx)()
	cmd := fmt.Sprintf("download:%08x", size)
	if err := c.t.Send([]byte(cmd)); err != nil {
		return ctxErr(ctx, err)
	}
	kind, payload, err := c.response(cmd)
	if err != nil {
		return ctxErr(ctx, err)
	}
	if kind != "DATA" {
		return fmt.Errorf("fastboot %s: want DATA, got %s", cmd, kind)
	}
	if n, err := strconv.ParseInt(payload, 16, 64); err != nil || n != size {
		return fmt.Errorf("fastboot %s: device accepts %q bytes", cmd, payload)
	}
	pw := &packetWriter{c: c, progress: progress, ctx: ctx}
	if err := write(pw); err != nil {
		return ctxErr(ctx, err)
	}
	if err := pw.flush(); err != nil {
		return ctxErr(ctx, err)
	}
	if pw.sent != size {
		return fmt.Errorf("fastboot %s: sent %d bytes", cmd, pw.sent)
	}
	kind, _, err = c.response(cmd)
	if err != nil {
		return ctxErr(ctx, err)
	}
	if kind != "OKAY" {
		return fmt.Errorf("fastboot %s: unexpected %s after data", cmd, kind)
	}
	return nil
}

// packetWriter sends download data in 1 MiB packets.
type packetWriter struct {
	c        *FastbootClient
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
	if err := w.ctx.Err(); err != nil {
		return err
	}
	w.c.refresh()
	if err := w.c.t.Send(w.buf); err != nil {
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
	res := Result{Target: o.Name, MappedBytes: img.MappedBytes,
		VerifyNote: "device-side verification not available (fastboot cannot read the partition back)"}
	fail := func(err error) Result {
		var fe *FastbootError
		switch {
		case ctx.Err() != nil:
			res.Failure = &Failure{Reason: ReasonCancelled, Offset: -1, Detail: "stopped", Err: err}
		case errors.As(err, &fe):
			res.Failure = &Failure{Reason: ReasonFastboot, Offset: -1, Detail: fe.Error(), Err: err}
		case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) || isConnReset(err):
			res.Failure = &Failure{Reason: ReasonUnplugged, Offset: -1, Detail: "the device went away: " + err.Error(), Err: err}
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
