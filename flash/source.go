package flash

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// Format is an image file's compression, detected from its first bytes.
type Format string

// Image formats.
const (
	FormatRaw  Format = "raw"
	FormatZstd Format = "zstd"
	FormatGzip Format = "gzip"
	FormatXz   Format = "xz"
)

var magics = []struct {
	format Format
	magic  []byte
}{
	{FormatZstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{FormatGzip, []byte{0x1f, 0x8b}},
	{FormatXz, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
}

// DetectFormat names the compression of data's first bytes (the name of a
// file is not trusted: images are renamed, and .img files may be
// compressed).
func DetectFormat(head []byte) Format {
	for _, m := range magics {
		if bytes.HasPrefix(head, m.magic) {
			return m.format
		}
	}
	return FormatRaw
}

// xzCommand is the system xz (liblzma, about twice as fast as pure Go);
// empty forces the pure-Go decoder.
var xzCommand = "xz"

// decompressor wraps r, an image stream of the given format, in a reader of
// the raw image. close releases it and reports a decoder failure that
// happened after the last read (e.g. the xz process).
func decompressor(ctx context.Context, format Format, r io.Reader) (raw io.Reader, closeFn func() error, err error) {
	switch format {
	case FormatRaw:
		return r, func() error { return nil }, nil
	case FormatGzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, zr.Close, nil
	case FormatZstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderLowmem(false), zstd.WithDecoderMaxWindow(1<<31))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, func() error { zr.Close(); return nil }, nil
	case FormatXz:
		if path, err := exec.LookPath(xzCommand); err == nil && xzCommand != "" {
			return systemXz(ctx, path, r)
		}
		xr, err := xz.NewReader(bufio.NewReaderSize(r, 1<<20))
		if err != nil {
			return nil, nil, fmt.Errorf("xz: %w", err)
		}
		return xr, func() error { return nil }, nil
	}
	return nil, nil, fmt.Errorf("unknown image format %q", format)
}

// systemXz decompresses through `xz -dc`, feeding it r. The stream is good
// only if xz exits 0 and says nothing on stderr: a cut or corrupt .xz
// makes xz stop (its output then just ends) and complain, and the reader
// turns that into the error at the end of the stream.
func systemXz(ctx context.Context, path string, r io.Reader) (io.Reader, func() error, error) {
	cmd := exec.CommandContext(ctx, path, "--decompress", "--stdout", "--threads=0")
	cmd.Stdin = r
	// Its own process group, killed whole: nothing it started keeps its
	// pipes open once it is stopped; and its pipes are closed anyway a
	// moment after it exits.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	x := &xzProcess{cmd: cmd}
	cmd.Stderr = &x.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("xz: %w", err)
	}
	x.out = out
	if f, ok := out.(*os.File); ok {
		// A pipe holds 64 KiB: xz and the reader would take turns for
		// every 64 KiB of a GiB. (Best effort: the default still works.)
		if rc, err := f.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start xz: %w", err)
	}
	return x, func() error { return x.finish(true) }, nil
}

// xzProcess reads a running xz's output and turns its exit status and
// stderr into the error at the end of the stream, so a corrupt .xz is not
// mistaken for a short image.
type xzProcess struct {
	cmd    *exec.Cmd
	out    io.Reader
	stderr bytes.Buffer

	once sync.Once
	err  error
}

func (x *xzProcess) Read(p []byte) (int, error) {
	n, err := x.out.Read(p)
	if errors.Is(err, io.EOF) {
		if werr := x.finish(false); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// finish waits for xz and returns why the stream is not good, if it is
// not. With abandon (the reader stops before the end: the image was
// refused on the way, or the work cancelled) xz is killed first and its
// end does not matter.
func (x *xzProcess) finish(abandon bool) error {
	x.once.Do(func() {
		if abandon {
			_ = syscall.Kill(-x.cmd.Process.Pid, syscall.SIGKILL)
		}
		err := x.cmd.Wait()
		msg := bytes.TrimSpace(x.stderr.Bytes())
		switch {
		case abandon:
		case err != nil && len(msg) > 0:
			x.err = fmt.Errorf("xz: %w: %s", err, msg)
		case err != nil:
			x.err = fmt.Errorf("xz: %w", err)
		case len(msg) > 0:
			x.err = fmt.Errorf("xz exited 0 but reported: %s", msg)
		}
	})
	return x.err
}

// openImage opens an image file and reports its format.
func openImage(path string) (*os.File, Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("open image: %w", err)
	}
	head := make([]byte, 8)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, "", fmt.Errorf("read image: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, "", err
	}
	return f, DetectFormat(head[:n]), nil
}
