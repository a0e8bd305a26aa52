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
