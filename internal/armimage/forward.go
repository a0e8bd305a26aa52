package armimage

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// ForwardArg is the first argument of the forwarding process QEMU starts
// for each guest connection to ProxyGuestAddr (see QEMU.Forwarder and
// ForwardMain).
//
// Why a process: QEMU's guestfwd to a chardev ("-tcp:127.0.0.1:PORT")
// opens one host connection when QEMU starts and pours every guest
// connection into that one byte stream, never telling the host where one
// ends; a server that closes an idle connection (any HTTP server's
// timeouts) cuts the board off for good. guestfwd's "cmd:" form instead
// runs a command per guest connection with the connection as its stdin and
// stdout, so each guest connection is one host connection, opened and
// closed with it.
const ForwardArg = "flashstation-qemu-forward"

// ForwardMain makes the running binary the forwarding process when it was
// started as one (os.Args[1] is ForwardArg, os.Args[2] the host address):
// it relays stdin and stdout to a TCP connection to that address, then
// exits. Otherwise it returns at once. A binary named as QEMU.Forwarder
// calls it first thing in main (or TestMain).
func ForwardMain() {
	if len(os.Args) != 3 || os.Args[1] != ForwardArg {
		return
	}
	// stdin is a socket: made non-blocking, it is read through the
	// runtime's poller, and forward can stop its reader with a deadline.
	var in io.Reader = os.Stdin
	if err := syscall.SetNonblock(0, true); err == nil {
		in = os.NewFile(0, "guest-connection")
	}
	// stderr is the guest's connection too: report nothing there.
	if err := forward(in, os.Stdout, os.Args[2]); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// forward relays one guest connection (in, out) to addr until the host
// closes its side. When the guest closes first, the host gets a
// half-close and its answer still comes back. When the host ends first,
// the copy from in is stopped with a read deadline when in has one (an
// *os.File on a non-blocking socket), and otherwise left to the process's
// exit.
func forward(in io.Reader, out io.WriteCloser, addr string) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return fmt.Errorf("armimage: forward: %w", err)
	}
	defer c.Close()
	up := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, in)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		up <- err
	}()
	_, err = io.Copy(out, c)
	out.Close()
	if d, ok := in.(interface{ SetReadDeadline(time.Time) error }); ok && d.SetReadDeadline(time.Now()) == nil {
		if uerr := <-up; !errors.Is(uerr, os.ErrDeadlineExceeded) {
			err = errors.Join(err, uerr)
		}
		return err
	}
	select {
	case uerr := <-up:
		return errors.Join(err, uerr)
	default:
		return err
	}
}

// forwardCmd is guestfwd's cmd: value running exe as the forwarder to
// addr, quoted for QEMU's option parser (a comma doubled) and for the
// shell-like split libslirp applies (single quotes).
func forwardCmd(exe, addr string) string {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	return strings.ReplaceAll(q(exe)+" "+ForwardArg+" "+q(addr), ",", ",,")
}
