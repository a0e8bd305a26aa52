package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/usb"
	"github.com/flashstation/flashstation/usb/libusb"
	"github.com/flashstation/flashstation/usb/usbtest"
)

// linux68 is usb's testdata sysfs of a 6.8 kernel: a USB 3 hub's halves on
// 1-1 and 2-1, a USB 2 only hub on 1-1.4.
var linux68 = usb.Sysfs{Root: "../../usb/testdata/linux-6.8/sys", Dev: "/dev"}

// TestDevicesShowHubs: devices shows each hub's power switching (from its
// descriptor, through the hub reader) and its peer hub (from sysfs).
func TestDevicesShowHubs(t *testing.T) {
	hubs := &usbtest.Hubs{Descriptors: map[string]usb.HubDescriptor{
		"1-1": {Ports: 4, Characteristics: 0x00e9}, "2-1": {Ports: 4, Characteristics: 0x0009},
		"1-1.4": {Ports: 4, Characteristics: 0x00e0},
	}}
	devs, ports, err := listDevices(context.Background(), linux68, hubs)
	if err != nil || ports.err != nil {
		t.Fatal(err, ports.err)
	}
	var b bytes.Buffer
	printDevices(&b, devs, ports.list)
	for _, want := range []string{
		"HUB          PORTS POWER SWITCHING      PEER HUB\n",
		"1-1          4     per-port             2-1\n",
		"1-1.4        4     ganged               -\n",
		"2-1          4     per-port             1-1\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("devices lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "/dev/ttyS1") {
		t.Errorf("an 8250 placeholder is listed:\n%s", b.String())
	}

	// Without libusb the peers are still known from sysfs.
	hubs = &usbtest.Hubs{DescriptorFail: fmt.Errorf("hub descriptor: %w", libusb.ErrUnavailable)}
	devs, _, _ = listDevices(context.Background(), linux68, hubs)
	b.Reset()
	printHubs(&b, devs)
	if want := "1-1          4     unknown (no libusb)  2-1\n"; !strings.Contains(b.String(), want) {
		t.Errorf("without libusb, want %q:\n%s", want, b.String())
	}
	hubs = &usbtest.Hubs{DescriptorFail: errors.New("hub 1-1 descriptor: libusb: bad access [code -3]")}
	if got := powerSwitching(context.Background(), hubs, "1-1"); got != "unknown (libusb: bad access [code -3])" {
		t.Errorf("power switching on an error: %q", got)
	}
	// The real session: without cgo it says no libusb; with it, a hub
	// that is not there is unknown too.
	lib := libusb.New()
	defer lib.Close()
	if got := powerSwitching(context.Background(), lib, "99-9"); !strings.HasPrefix(got, "unknown (") {
		t.Errorf("missing hub: %q", got)
	}
}

// TestConfigCheckHubs: config check reads the power switching of the hubs
// this PC has (a ganged SuperSpeed half is an error naming slot and hub)
// and says which hubs it could not check because they are not here.
func TestConfigCheckHubs(t *testing.T) {
	st := &lines.Station{
		Lines: []lines.Line{{ID: "l1", Boot: lines.Boot{Trigger: lines.TriggerHubPower}}},
		Slots: []lines.Slot{
			{ID: "A1", Line: "l1", Power: &lines.Power{Hub: "1-1", Port: 1}},
			{ID: "A2", Line: "l1", Power: &lines.Power{Hub: "5-2", Port: 1}},
		},
	}
	sys := linux68
	hubs := &usbtest.Hubs{Descriptors: map[string]usb.HubDescriptor{
		"1-1": {Ports: 4, Characteristics: 0x0001},
		"2-1": {Ports: 4, Characteristics: 0x0000},
	}}
	problems, notHere := checkHubsHere(context.Background(), st, sys, hubs)
	if len(problems) != 1 || !strings.Contains(problems[0].Error(), "slot A1: hub 2-1 switches power ganged") {
		t.Errorf("problems %v", problems)
	}
	if len(notHere) != 1 || notHere[0] != "5-2" {
		t.Errorf("not here %v", notHere)
	}
	hubs.Descriptors["2-1"] = usb.HubDescriptor{Ports: 4, Characteristics: 0x0001}
	if problems, _ := checkHubsHere(context.Background(), st, sys, hubs); len(problems) != 0 {
		t.Errorf("per-port hubs: %v", problems)
	}
}
