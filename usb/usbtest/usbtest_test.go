package usbtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flashstation/flashstation/usb"
	"github.com/flashstation/flashstation/usb/usbtest"
)

func TestCyclePort(t *testing.T) {
	h := &usbtest.Hubs{}
	var seen []bool
	h.OnSwitch = func(e usbtest.PowerEvent) { seen = append(seen, e.On) }
	if err := usb.CyclePort(context.Background(), h, "1-1.4", 2, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ev := h.Events()
	if len(ev) != 2 || ev[0] != (usbtest.PowerEvent{"1-1.4", 2, false}) || ev[1] != (usbtest.PowerEvent{"1-1.4", 2, true}) {
		t.Errorf("events %+v", ev)
	}
	if !h.Powered("1-1.4", 2) || len(seen) != 2 {
		t.Error("port left off")
	}
	// Cancelled mid-cycle: the port still comes back on.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := usb.CyclePort(ctx, h, "1-1.4", 3, time.Hour); err != nil || !h.Powered("1-1.4", 3) {
		t.Errorf("cancelled cycle: %v, powered %v", err, h.Powered("1-1.4", 3))
	}
	h.Fail = errors.New("libusb: access denied")
	if err := usb.CyclePort(context.Background(), h, "1-1.4", 2, 0); err == nil {
		t.Error("failure not reported")
	}
}

func TestBus(t *testing.T) {
	var b usbtest.Bus
	b.Plug(usb.Device{PortPath: "1-1.4", Serial: "A"})
	b.Plug(usb.Device{PortPath: "1-1.2", Serial: "B"})
	d, _ := b.Devices()
	if len(d) != 2 || d[0].PortPath != "1-1.2" {
		t.Errorf("%+v", d)
	}
	b.Unplug("1-1.2")
	if d, _ := b.Devices(); len(d) != 1 || d[0].Serial != "A" {
		t.Errorf("%+v", d)
	}
}

// strictPower refuses a switch under an ended context, as the libusb
// adapter does.
type strictPower struct{ on []bool }

func (p *strictPower) SetPortPower(ctx context.Context, _ string, _ int, on bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.on = append(p.on, on)
	return nil
}

// TestCyclePortPowersOnAfterCancel: a cycle cancelled while the port is
// off still switches it on, through a context that has not ended.
func TestCyclePortPowersOnAfterCancel(t *testing.T) {
	p := &strictPower{}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	if err := usb.CyclePort(ctx, p, "1-1", 2, time.Hour); err != nil {
		t.Fatal(err)
	}
	if len(p.on) != 2 || p.on[0] || !p.on[1] {
		t.Errorf("switches %v, want off then on", p.on)
	}
}

func TestHubsDescriptors(t *testing.T) {
	h := &usbtest.Hubs{Descriptors: map[string]usb.HubDescriptor{"1-1": {Ports: 7, Characteristics: 0x00e0}}}
	if d, err := h.HubDescriptor(context.Background(), "1-1"); err != nil || d.Switching() != usb.PowerGanged {
		t.Errorf("1-1: %+v %v", d, err)
	}
	if d, err := h.HubDescriptor(context.Background(), "2-1"); err != nil || d.Switching() != usb.PowerPerPort {
		t.Errorf("2-1: %+v %v", d, err)
	}
}

// peers is a USB 3 hub whose halves are 1-1 and 2-1.
var peers = usbtest.Twins{"1-1": "2-1"}

// TestCyclePortsBothHalves: a port of a USB 3 hub is switched off on both
// of its halves, then on again in the reverse order; a USB 2 only hub's
// port alone.
func TestCyclePortsBothHalves(t *testing.T) {
	ports := usb.PortsOf(peers, "1-1", 3)
	if len(ports) != 2 || ports[1] != (usb.Port{Hub: "2-1", Port: 3}) {
		t.Fatalf("ports %v", ports)
	}
	if got := usb.PortsOf(peers, "1-1.4", 1); len(got) != 1 {
		t.Errorf("a USB 2 hub's port: %v", got)
	}
	if got := usb.PortsOf(nil, "1-1", 3); len(got) != 1 {
		t.Errorf("no peer finder: %v", got)
	}
	h := &usbtest.Hubs{}
	if err := usb.CyclePorts(context.Background(), h, ports, 0); err != nil {
		t.Fatal(err)
	}
	want := []usbtest.PowerEvent{{Hub: "1-1", Port: 3, On: false}, {Hub: "2-1", Port: 3, On: false}, {Hub: "2-1", Port: 3, On: true}, {Hub: "1-1", Port: 3, On: true}}
	got := h.Events()
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("switch %d: %v, want %v", i, got[i], want[i])
		}
	}
}

// failOn fails the switches of one hub.
type failOn struct {
	*usbtest.Hubs
	hub string
}

func (f failOn) SetPortPower(ctx context.Context, hub string, port int, on bool) error {
	if hub == f.hub && !on {
		return errors.New("pipe error")
	}
	return f.Hubs.SetPortPower(ctx, hub, port, on)
}

// TestCyclePortsPeerFails: the peer half refuses to switch off: the first
// half is switched back on (the slot is not left unpowered) and the error
// names the port.
func TestCyclePortsPeerFails(t *testing.T) {
	h := &usbtest.Hubs{}
	err := usb.CyclePorts(context.Background(), failOn{h, "2-1"}, usb.PortsOf(peers, "1-1", 2), 0)
	if err == nil || err.Error() != "2-1 port 2 off: pipe error" {
		t.Errorf("error %v", err)
	}
	if !h.Powered("1-1", 2) {
		t.Error("the first half was left off")
	}
	if ev := h.Events(); len(ev) != 2 || ev[0].On || !ev[1].On {
		t.Errorf("events %v", ev)
	}
}
