package libusb_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/usb"
	"github.com/flashstation/flashstation/usb/libusb"
	"github.com/flashstation/flashstation/usb/libusb/libusbtest"
	"github.com/flashstation/flashstation/usb/usbtest"
)

// script reads a playback from testdata or from text.
func script(t *testing.T, nameOrText string) *libusbtest.Playback {
	t.Helper()
	text := nameOrText
	if strings.HasSuffix(nameOrText, ".usb") {
		b, err := os.ReadFile(filepath.Join("testdata", nameOrText))
		if err != nil {
			t.Fatal(err)
		}
		text = string(b)
	}
	p, err := libusbtest.ParseScript(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// played fails the test with every mismatch of the playback, and the calls
// never made.
func played(t *testing.T, p *libusbtest.Playback) {
	t.Helper()
	if err := p.Err(); err != nil {
		t.Errorf("playback:\n%v", err)
	}
}

// TestHubPowerOnBothHalves plays the recorded hub requests back: both
// halves' descriptors say per-port switching, and a power cycle of socket
// 1 sends CLEAR_FEATURE(PORT_POWER) to port 1 of the USB 2 half, then of
// the SuperSpeed half, and SET_FEATURE back in the reverse order: request
// type 0x23, requests 1 and 3, feature 8, index 1, each on its own hub.
func TestHubPowerOnBothHalves(t *testing.T) {
	p := script(t, "hub-power-usb3.usb")
	s := libusb.NewWith(p)
	defer s.Close()
	ctx := context.Background()
	for _, hub := range []string{"1-1", "2-1"} {
		d, err := s.HubDescriptor(ctx, hub)
		if err != nil {
			t.Fatal(err)
		}
		if d.Ports != 4 || d.Switching() != usb.PowerPerPort {
			t.Errorf("hub %s: %+v, switching %v", hub, d, d.Switching())
		}
	}
	if err := usb.CyclePorts(ctx, s, usb.PortsOf(usbtest.Twins{"1-1": "2-1"}, "1-1", 1), 0); err != nil {
		t.Fatal(err)
	}
	played(t, p)
}

// TestHubRequestFaults: a hub that stalls, times out, is not a hub or is
// not there fails the request naming hub, port and state; a bad port or
// a stopped ctx sends nothing; every device opened is closed.
func TestHubRequestFaults(t *testing.T) {
	const hubs = "device 1-1 class=0x09 usb=0x0200\ndevice 1-2 class=0x08 usb=0x0200\n"
	for _, tc := range []struct {
		name, ops string
		hub       string
		port      int
		on        bool
		ctx       func() (context.Context, context.CancelFunc)
		want      []string
		is        error
	}{
		{name: "stall", hub: "1-1", port: 2, ops: "open 1-1\ncontrol 1-1 type=0x23 req=1 value=8 index=2 err=stall\nclose 1-1",
			want: []string{"hub 1-1 port 2 power off", "stalled"}, is: libusb.ErrStall},
		{name: "on stalls", hub: "1-1", port: 3, on: true, ops: "open 1-1\ncontrol 1-1 type=0x23 req=3 value=8 index=3 err=stall\nclose 1-1",
			want: []string{"hub 1-1 port 3 power on"}, is: libusb.ErrStall},
		{name: "hung hub", hub: "1-1", port: 1, ops: "open 1-1\ncontrol 1-1 type=0x23 req=1 value=8 index=1 hang\nclose 1-1",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 20*time.Millisecond)
			},
			want: []string{"hub 1-1 port 1 power off", "timed out"}, is: libusb.ErrTimeout},
		{name: "not a hub", hub: "1-2", port: 1, ops: "open 1-2\nclose 1-2", want: []string{"not a hub", "class 0x08"}},
		{name: "no hub there", hub: "1-3", port: 1, ops: "open 1-3 err=no-device", want: []string{"hub 1-3 port 1 power off", "no device"}, is: flash.ErrDeviceGone},
		{name: "port 0", hub: "1-1", port: 0, want: []string{"no such port"}},
		{name: "not a port path", hub: "hub", port: 1, want: []string{"hub hub port 1", "not a USB port path"}},
		{name: "stopped", hub: "1-1", port: 1, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, want: []string{"hub 1-1 port 1"}, is: context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := script(t, hubs+tc.ops)
			s := libusb.NewWith(p)
			defer s.Close()
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			err := s.SetPortPower(ctx, tc.hub, tc.port, tc.on)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v: want %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v: want it to wrap %v", err, tc.is)
			}
			played(t, p)
		})
	}
}

// TestHubDescriptorFaults: a descriptor the hub refuses or garbles is an
// error naming the hub.
func TestHubDescriptorFaults(t *testing.T) {
	for _, tc := range []struct{ name, ops, want string }{
		{"stall", "open 1-1\ncontrol 1-1 type=0xa0 req=6 value=0x2900 index=0 err=stall\nclose 1-1", "hub 1-1 descriptor: usb: endpoint stalled"},
		{"short", "open 1-1\ncontrol 1-1 type=0xa0 req=6 value=0x2900 index=0 data=0929\nclose 1-1", "hub 1-1: hub descriptor: 2 bytes"},
		{"not a hub descriptor", "open 1-1\ncontrol 1-1 type=0xa0 req=6 value=0x2900 index=0 data=0902040900\nclose 1-1", "not a hub descriptor"},
		{"gone", "open 1-1 err=no-device", "hub 1-1 descriptor: usb 1-1: usb: no device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := script(t, "device 1-1 class=0x09 usb=0x0200\n"+tc.ops)
			s := libusb.NewWith(p)
			defer s.Close()
			_, err := s.HubDescriptor(context.Background(), "1-1")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			played(t, p)
		})
	}
}

// sessionImage prepares the session's image: 8 MiB, block 0 "A"s, the
// last block "B"s, zeros between (two mapped blocks).
func sessionImage(t *testing.T) *flash.Prepared {
	t.Helper()
	dir := t.TempDir()
	raw := make([]byte, 8<<20)
	copy(raw, bytes.Repeat([]byte("A"), 4096))
	copy(raw[len(raw)-4096:], bytes.Repeat([]byte("B"), 4096))
	path := filepath.Join(dir, "board.img")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := flash.NewCache(filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := c.Prepare(context.Background(), flash.ImageSpec{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.MappedBytes != 8192 {
		t.Fatalf("the image maps %d bytes, the script expects 8192", img.MappedBytes)
	}
	return img
}

// TestFastbootSessionByteForByte flashes through the adapter and checks
// every USB call against the recorded session: the commands, both sparse
// pieces by digest (sized by the board's max-download-size), INFO and a
// zero-length packet on the way, the reboot, and the interface released
// before the device is closed.
func TestFastbootSessionByteForByte(t *testing.T) {
	img := sessionImage(t)
	p := script(t, "fastboot-session.usb")
	s := libusb.NewWith(p)
	defer s.Close()
	ctx := context.Background()
	job, err := flash.OpenJob(ctx, "fastboot:usb:1-1.2", flash.TargetOptions{USB: s, Reboot: true})
	if err != nil {
		t.Fatal(err)
	}
	res := job.Run(ctx, img, flash.Options{})
	if err := job.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if res.Failure != nil {
		t.Fatalf("flash: %v", res.Failure)
	}
	if res.WrittenBytes != 8192 {
		t.Errorf("written %d bytes, want 8192", res.WrittenBytes)
	}
	played(t, p)
}

// faultHead is a session up to the first download.
const faultHead = `device 1-1.2 class=0x00 usb=0x0200
interface 1-1.2 0 alt=0 class=0xff/0x42/0x03 ep=in:1:bulk:512 ep=out:1:bulk:512
open 1-1.2
claim 1-1.2 if=0 alt=0 in=1 out=1
`

const faultPiece = `write 1-1.2 "getvar:max-download-size"
read 1-1.2 "OKAY0x00001800"
write 1-1.2 "getvar:partition-size:mmc0"
read 1-1.2 "FAILunknown partition"
write 1-1.2 "download:00001034"
read 1-1.2 "DATA00001034"
`

const faultTail = "close-pipe 1-1.2\nclose 1-1.2\n"

// TestFastbootFaults: a hung board, a FAIL answer, a board pulled
// mid-download and a stop mid-download each end the job with the reason
// an operator reads and a detail naming the command; the interface is
// released only once no transfer runs.
func TestFastbootFaults(t *testing.T) {
	img := sessionImage(t)
	for _, tc := range []struct {
		name    string
		ops     string
		stopAt  int // cancel the job's ctx once this many calls were made
		closeAt int // close the job from another goroutine at this call
		reason  string
		detail  []string
	}{
		{name: "hung board", ops: "write 1-1.2 \"getvar:max-download-size\"\nread 1-1.2 hang\n",
			reason: flash.ReasonFastboot, detail: []string{"getvar:max-download-size", "did not answer within 50ms", "hung"}},
		{name: "hung on a command", ops: "write 1-1.2 \"getvar:max-download-size\" hang\n",
			reason: flash.ReasonFastboot, detail: []string{"did not take the command within 50ms"}},
		{name: "FAIL answer", ops: faultPiece + `write 1-1.2 len=4148 sha256=14ad1529765b8848c231cada46b2452b9adbbc00ceb10393974e49691bf3bf27
read 1-1.2 "OKAY"
write 1-1.2 "flash:mmc0"
read 1-1.2 "INFOerasing"
read 1-1.2 "FAILpartition mmc0 not found"
`, reason: flash.ReasonFastboot, detail: []string{"flash:mmc0: FAILED (partition mmc0 not found)"}},
		{name: "pulled mid-download", ops: faultPiece + "write 1-1.2 len=4148 taken=2048 err=no-device\n",
			reason: flash.ReasonUnplugged, detail: []string{"download:00001034", "no device"}},
		{name: "pulled before the answer", ops: "write 1-1.2 \"getvar:max-download-size\"\nread 1-1.2 err=no-device\n",
			reason: flash.ReasonUnplugged, detail: []string{"getvar:max-download-size", "the device went away"}},
		{name: "stopped mid-download", ops: faultPiece + "write 1-1.2 len=4148 hang\n", stopAt: 9,
			reason: flash.ReasonCancelled, detail: []string{"stopped"}},
		{name: "closed under a read", ops: "write 1-1.2 \"getvar:max-download-size\"\nread 1-1.2 hang\n", closeAt: 4,
			reason: flash.ReasonFastboot, detail: []string{"connection closed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := script(t, faultHead+tc.ops+faultTail)
			s := libusb.NewWith(p)
			defer s.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			timeout := 50 * time.Millisecond
			if tc.stopAt > 0 || tc.closeAt > 0 {
				timeout = time.Hour // only the stop or the close ends the hang
			}
			job, err := flash.OpenJob(ctx, "fastboot:usb:1-1.2", flash.TargetOptions{USB: s, FastbootTimeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			closed := make(chan error, 1)
			if at := max(tc.stopAt, tc.closeAt); at > 0 {
				go func() {
					wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
					defer wcancel()
					if err := p.WaitFor(wctx, at); err != nil {
						cancel() // end the hang: the test fails, it does not stall
						closed <- err
						return
					}
					if tc.stopAt > 0 {
						cancel()
						closed <- nil
						return
					}
					closed <- job.Close()
				}()
			}
			res := job.Run(ctx, img, flash.Options{})
			if tc.stopAt > 0 || tc.closeAt > 0 {
				if err := <-closed; err != nil {
					t.Errorf("stop or close: %v", err)
				}
			}
			job.Close()
			if res.Failure == nil {
				t.Fatal("the job passed")
			}
			if res.Failure.Reason != tc.reason {
				t.Errorf("reason %s (%v), want %s", res.Failure.Reason, res.Failure, tc.reason)
			}
			for _, d := range tc.detail {
				if !strings.Contains(res.Failure.Error(), d) {
					t.Errorf("%q: want %q", res.Failure.Error(), d)
				}
			}
			played(t, p)
		})
	}
}

// TestZeroLengthPackets: a command that fills its last packet is ended by
// a zero-length packet (64 bytes on a full-speed board, 512 on a
// high-speed one); a shorter one is not, and download data never is (the
// board reads the size it accepted; a ZLP there would reach it as an
// empty command).
func TestZeroLengthPackets(t *testing.T) {
	for _, tc := range []struct {
		name   string
		packet int
		send   func(context.Context, flash.FastbootTransport) error
		ops    string
	}{
		{"full-speed 64-byte command", 64, func(ctx context.Context, tr flash.FastbootTransport) error {
			return tr.Send(ctx, bytes.Repeat([]byte("x"), 64))
		}, `write 1-1.2 "` + strings.Repeat("x", 64) + `"` + "\nwrite 1-1.2 \"\"\n"},
		{"high-speed 512-byte command", 512, func(ctx context.Context, tr flash.FastbootTransport) error {
			return tr.Send(ctx, bytes.Repeat([]byte("y"), 512))
		}, "write 1-1.2 len=512 sha256=" + sum(bytes.Repeat([]byte("y"), 512)) + "\nwrite 1-1.2 \"\"\n"},
		{"short command", 512, func(ctx context.Context, tr flash.FastbootTransport) error {
			return tr.Send(ctx, []byte("getvar:version"))
		}, "write 1-1.2 \"getvar:version\"\n"},
		{"data of whole packets", 512, func(ctx context.Context, tr flash.FastbootTransport) error {
			return tr.SendData(ctx, bytes.Repeat([]byte{7}, 2048))
		}, "write 1-1.2 len=2048 sha256=" + sum(bytes.Repeat([]byte{7}, 2048)) + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := strings.ReplaceAll(faultHead, ":512", ":"+itoa(tc.packet))
			p := script(t, head+tc.ops+faultTail)
			s := libusb.NewWith(p)
			defer s.Close()
			ctx := context.Background()
			tr, err := s.OpenFastboot(ctx, "1-1.2")
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.send(ctx, tr); err != nil {
				t.Error(err)
			}
			if err := tr.Close(); err != nil {
				t.Error(err)
			}
			if err := tr.Send(ctx, []byte("getvar:version")); err == nil || !strings.Contains(err.Error(), "closed") {
				t.Errorf("send after close: %v", err)
			}
			played(t, p)
		})
	}
}

// TestOpenFastbootRefusals: a device without the fastboot interface, one
// whose interface lacks an endpoint, one that cannot be claimed, and a
// response longer than fastboot allows are refused, naming the port; the
// device is closed each time.
func TestOpenFastbootRefusals(t *testing.T) {
	for _, tc := range []struct{ name, script, want string }{
		{"mass storage", "device 1-1.2 class=0x00\ninterface 1-1.2 0 alt=0 class=0x08/0x06/0x50 ep=in:1:bulk:512 ep=out:2:bulk:512\nopen 1-1.2\nclose 1-1.2",
			"usb 1-1.2: no fastboot interface (class ff/42/03)"},
		{"no bulk out", "device 1-1.2 class=0x00\ninterface 1-1.2 0 alt=0 class=0xff/0x42/0x03 ep=in:1:bulk:512 ep=out:2:interrupt:64\nopen 1-1.2\nclose 1-1.2",
			"fastboot interface 0 lacks bulk endpoints"},
		{"busy", faultHead[:strings.Index(faultHead, "claim")] + "claim 1-1.2 if=0 alt=0 in=1 out=1 err=no-device\nclose 1-1.2",
			"usb 1-1.2: claim fastboot interface 0"},
		{"gone", "device 1-1.2 class=0x00\nopen 1-1.2 err=no-device", "usb 1-1.2: usb: no device"},
		{"bad path", "", "not a USB port path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := script(t, tc.script)
			s := libusb.NewWith(p)
			defer s.Close()
			port := "1-1.2"
			if tc.name == "bad path" {
				port = "1-"
			}
			if _, err := s.OpenFastboot(context.Background(), port); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			played(t, p)
		})
	}
	t.Run("long response", func(t *testing.T) {
		p := script(t, faultHead+"read 1-1.2 \""+strings.Repeat("z", 65)+"\"\n"+faultTail)
		s := libusb.NewWith(p)
		defer s.Close()
		tr, err := s.OpenFastboot(context.Background(), "1-1.2")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Recv(context.Background()); err == nil || !strings.Contains(err.Error(), "65-byte fastboot response") {
			t.Errorf("65-byte response: %v", err)
		}
		tr.Close()
		played(t, p)
	})
}

// TestRecorderRoundTrip: a session through a Recorder, written as a script
// and read back, is the session that was played.
func TestRecorderRoundTrip(t *testing.T) {
	img := sessionImage(t)
	p := script(t, "fastboot-session.usb")
	rec := &libusbtest.Recorder{B: p}
	s := libusb.NewWith(rec)
	ctx := context.Background()
	job, err := flash.OpenJob(ctx, "fastboot:usb:1-1.2", flash.TargetOptions{USB: s, Reboot: true})
	if err != nil {
		t.Fatal(err)
	}
	if res := job.Run(ctx, img, flash.Options{}); res.Failure != nil {
		t.Fatal(res.Failure)
	}
	job.Close()
	s.Close()
	played(t, p)
	var got, want bytes.Buffer
	ops, devs := rec.Ops()
	if err := libusbtest.WriteScript(&got, devs, ops); err != nil {
		t.Fatal(err)
	}
	if err := libusbtest.WriteScript(&want, p.Devices, p.Ops); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("recorded:\n%s\nplayed:\n%s", got.String(), want.String())
	}
	again, err := libusbtest.ParseScript(&got)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Ops) != len(p.Ops) {
		t.Errorf("read back %d calls, want %d", len(again.Ops), len(p.Ops))
	}
}

// TestClosedSession: a closed session refuses everything, naming why.
func TestClosedSession(t *testing.T) {
	p := script(t, "")
	s := libusb.NewWith(p)
	if err := s.Available(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := s.SetPortPower(context.Background(), "1-1", 1, true); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("after close: %v", err)
	}
	if err := s.Available(); err == nil {
		t.Error("available after close")
	}
	played(t, p)
}

// TestStoppedBeforeAnyCall: a ctx that has ended opens nothing and sends
// nothing.
func TestStoppedBeforeAnyCall(t *testing.T) {
	p := script(t, faultHead+faultTail)
	s := libusb.NewWith(p)
	defer s.Close()
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.OpenFastboot(stopped, "1-1.2"); !errors.Is(err, context.Canceled) {
		t.Errorf("open: %v", err)
	}
	if _, err := s.HubDescriptor(stopped, "1-1"); !errors.Is(err, context.Canceled) {
		t.Errorf("hub descriptor: %v", err)
	}
	tr, err := s.OpenFastboot(context.Background(), "1-1.2")
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Send(stopped, []byte("getvar:version")); !errors.Is(err, context.Canceled) {
		t.Errorf("send: %v", err)
	}
	if _, err := tr.Recv(stopped); !errors.Is(err, context.Canceled) {
		t.Errorf("recv: %v", err)
	}
	tr.Close()
	played(t, p)
}
