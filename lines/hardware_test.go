package lines_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/sim"
	"github.com/flashstation/flashstation/usb"
	"github.com/flashstation/flashstation/usb/usbtest"
)

// fakeUSB is a lines.USB: hub ports from usbtest.Hubs, a fastboot opener
// that fails as told, and a count of closes.
type fakeUSB struct {
	usbtest.Hubs
	openErr error
	opened  []string
	closes  int
}

func (f *fakeUSB) OpenFastboot(_ context.Context, portPath string) (flash.FastbootTransport, error) {
	f.opened = append(f.opened, portPath)
	return nil, f.openErr
}

func (f *fakeUSB) Close() error { f.closes++; return nil }

// TestRealHardwareUSB: RealHardware opens fastboot and switches hub ports
// through its USB, says so when it has none, and closes it when closed.
func TestRealHardwareUSB(t *testing.T) {
	ctx := context.Background()
	var none lines.RealHardware
	if err := none.SetPortPower(ctx, "1-1", 2, false); err == nil || !strings.Contains(err.Error(), "hub 1-1 port 2") {
		t.Errorf("no USB: %v", err)
	}
	if _, err := none.OpenJob(ctx, usb.Device{PortPath: "1-1.2", Fastboot: true}, flash.TargetOptions{}); err == nil {
		t.Error("fastboot without USB opened")
	}
	if err := none.Close(); err != nil {
		t.Error(err)
	}

	f := &fakeUSB{openErr: errors.New("USB fastboot and hub power need libusb: this flashstation was built without cgo")}
	hw := &lines.RealHardware{USB: f}
	if err := usb.CyclePort(ctx, hw, "1-1", 2, 0); err != nil {
		t.Fatal(err)
	}
	if ev := f.Events(); len(ev) != 2 || ev[0] != (usbtest.PowerEvent{Hub: "1-1", Port: 2, On: false}) || !ev[1].On {
		t.Errorf("switches %+v", ev)
	}
	_, err := hw.OpenJob(ctx, usb.Device{PortPath: "1-1.2", Fastboot: true}, flash.TargetOptions{})
	if !errors.Is(err, f.openErr) || len(f.opened) != 1 || f.opened[0] != "1-1.2" {
		t.Errorf("fastboot open: %v, opened %v", err, f.opened)
	}
	if err := hw.Close(); err != nil || f.closes != 1 {
		t.Errorf("close: %v, %d closes", err, f.closes)
	}
}

// TestRealHardwarePeers: the station's hardware finds a USB 3 hub port's
// twin in sysfs, so a slot's power cycle switches both halves, off in
// order and on in reverse.
func TestRealHardwarePeers(t *testing.T) {
	u := &fakeUSB{}
	h := &lines.RealHardware{Sysfs: usb.Sysfs{Root: "../usb/testdata/linux-6.8/sys", Dev: "../usb/testdata/linux-6.8/dev"}, USB: u}
	var peers usb.PeerFinder = h // as the slot finds it
	ports := usb.PortsOf(peers, "1-1", 2)
	if len(ports) != 2 || ports[1] != (usb.Port{Hub: "2-1", Port: 2}) {
		t.Fatalf("ports %v", ports)
	}
	if err := usb.CyclePorts(context.Background(), h, ports, 0); err != nil {
		t.Fatal(err)
	}
	ev := u.Events()
	if len(ev) != 4 || ev[0] != (usbtest.PowerEvent{Hub: "1-1", Port: 2}) || ev[1] != (usbtest.PowerEvent{Hub: "2-1", Port: 2}) ||
		ev[3] != (usbtest.PowerEvent{Hub: "1-1", Port: 2, On: true}) {
		t.Errorf("switches %v", ev)
	}
}

// TestCheckHubPower: a hub-power line's slots need hubs that switch each
// port alone, on both halves of a USB 3 hub; ganged hubs, hubs without
// switching, ports past the hub's and unreadable descriptors are named,
// slot and hub; other lines and disabled slots are not checked.
func TestCheckHubPower(t *testing.T) {
	st := &lines.Station{
		Lines: []lines.Line{{ID: "l1", Boot: lines.Boot{Trigger: lines.TriggerHubPower}}, {ID: "l2", Boot: lines.Boot{Trigger: lines.TriggerFastbootReboot}}},
		Slots: []lines.Slot{
			{ID: "A1", Line: "l1", Power: &lines.Power{Hub: "1-1", Port: 1}},
			{ID: "A2", Line: "l1", Power: &lines.Power{Hub: "1-1", Port: 2}},
			{ID: "A3", Line: "l1", Power: &lines.Power{Hub: "3-1", Port: 9}},
			{ID: "A4", Line: "l1", Power: &lines.Power{Hub: "4-1", Port: 1}, Disabled: true},
			{ID: "B1", Line: "l2", Power: &lines.Power{Hub: "4-1", Port: 1}},
		},
	}
	hubs := &usbtest.Hubs{Descriptors: map[string]usb.HubDescriptor{
		"1-1": {Ports: 4, Characteristics: 0x0001},
		"2-1": {Ports: 4, Characteristics: 0x0000}, // the SuperSpeed half is ganged
		"3-1": {Ports: 4, Characteristics: 0x0001},
		"4-1": {Ports: 4, Characteristics: 0x0002},
	}}
	var peers usb.PeerFinder = usb.Sysfs{Root: "../usb/testdata/linux-6.8/sys"}
	errs := lines.CheckHubPower(context.Background(), st, hubs, peers)
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{"slot A1: hub 2-1 switches power ganged", "slot A2: hub 2-1 switches power ganged", "slot A3: hub 3-1 has 4 ports, the slot's power port is 9"} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
	if len(errs) != 3 || strings.Contains(all, "A4") || strings.Contains(all, "B1") || strings.Contains(all, "hub 1-1") {
		t.Errorf("problems:\n%s", all)
	}
	hubs.DescriptorFail = errors.New("LIBUSB_ERROR_ACCESS")
	if errs := lines.CheckHubPower(context.Background(), st, hubs, nil); len(errs) != 3 || !strings.Contains(errs[0].Error(), "slot A1: hub 1-1: its power switching cannot be read: LIBUSB_ERROR_ACCESS") {
		t.Errorf("unreadable: %v", errs)
	}
}

// TestStartRefusesUSBFastbootWithoutUSB: a station whose slots flash over
// USB fastboot does not start without USB access (no libusb, or none
// given): said at once, naming the slot, not as failed boards.
func TestStartRefusesUSBFastbootWithoutUSB(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a simulated bench")
	}
	dir := t.TempDir()
	bench, err := sim.NewBench(context.Background(), sim.BenchConfig{Dir: dir, Boards: 2, FastKeys: true, ImageSize: sim.MinImageSize})
	if err != nil {
		t.Fatal(err)
	}
	defer bench.Close()
	st, problems, err := lines.LoadValid(bench.ConfigPath)
	if err != nil {
		t.Fatalf("%v %v", err, problems)
	}
	led, err := ledger.Open(context.Background(), filepath.Join(st.DataDir, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	led.EnsureStation(context.Background(), ledger.Station{ID: st.ID})
	for _, l := range st.Lines {
		led.EnsureLine(context.Background(), ledger.Line{ID: l.ID, StationID: st.ID})
	}
	for _, hw := range []*lines.RealHardware{{}, {USB: &fakeUSB{}}} {
		p, err := lines.NewPipeline(context.Background(), st, lines.Options{Hardware: hw, Ledger: led, Logger: zerolog.Nop()})
		if hw.USB == nil {
			if err == nil || !strings.Contains(err.Error(), "slot B1 flashes over USB fastboot, and this station has no USB access") {
				t.Errorf("without USB: %v", err)
			}
			continue
		}
		// With USB, the next check is the hubs' (the fake's hubs switch per port).
		if err != nil {
			t.Errorf("with USB: %v", err)
		} else {
			p.Close()
		}
	}
}

// TestRealHardwarePortDisable: on a kernel with the ports' disable
// attribute (6.0 and later) a slot's power cycle goes through it, as
// uhubctl does, and nothing is sent over USB; a port without it falls back
// to the hub request; an attribute that cannot be written falls back too
// and, when USB fails as well, both reasons are named.
func TestRealHardwarePortDisable(t *testing.T) {
	root := t.TempDir()
	if out, err := exec.Command("cp", "-a", "../usb/testdata/linux-6.8/sys", root).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	sys := filepath.Join(root, "sys")
	disable := func(hub string, port int) string {
		return filepath.Join(sys, "bus/usb/devices", hub, hub+":1.0", fmt.Sprintf("%s-port%d", hub, port), "disable")
	}
	for _, hub := range []string{"1-1", "2-1"} {
		if err := os.WriteFile(disable(hub, 2), []byte("0"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u := &fakeUSB{}
	h := &lines.RealHardware{Sysfs: usb.Sysfs{Root: sys}, USB: u}
	ctx := context.Background()
	ports := usb.PortsOf(h, "1-1", 2)
	off, err := usb.SwitchOff(ctx, h, ports)
	if err != nil || len(off) != 2 {
		t.Fatalf("off: %v %v", off, err)
	}
	for _, hub := range []string{"1-1", "2-1"} {
		if b, _ := os.ReadFile(disable(hub, 2)); string(b) != "1" {
			t.Errorf("hub %s port 2 disable = %q after power off, want 1", hub, b)
		}
	}
	if err := usb.SwitchOn(ctx, h, off); err != nil {
		t.Fatal(err)
	}
	for _, hub := range []string{"1-1", "2-1"} {
		if b, _ := os.ReadFile(disable(hub, 2)); string(b) != "0" {
			t.Errorf("hub %s port 2 disable = %q after power on, want 0", hub, b)
		}
	}
	if ev := u.Events(); len(ev) != 0 {
		t.Errorf("hub requests sent besides sysfs: %v", ev)
	}
	// Port 1 has no disable attribute: the hub request switches it.
	if err := h.SetPortPower(ctx, "1-1", 1, false); err != nil {
		t.Fatal(err)
	}
	if ev := u.Events(); len(ev) != 1 || ev[0] != (usbtest.PowerEvent{Hub: "1-1", Port: 1}) {
		t.Errorf("fallback: %v", ev)
	}
	// An attribute that cannot be written (here a directory): USB is tried,
	// and both reasons are named when it fails too.
	os.Remove(disable("1-1", 2))
	if err := os.Mkdir(disable("1-1", 2), 0o755); err != nil {
		t.Fatal(err)
	}
	u.Fail = errors.New("LIBUSB_ERROR_ACCESS")
	err = h.SetPortPower(ctx, "1-1", 2, false)
	if err == nil || !strings.Contains(err.Error(), "LIBUSB_ERROR_ACCESS") || !strings.Contains(err.Error(), "sysfs first") {
		t.Errorf("both failing: %v", err)
	}
	// Without USB access a kernel with the attribute still switches.
	noUSB := &lines.RealHardware{Sysfs: usb.Sysfs{Root: sys}}
	if err := noUSB.SetPortPower(ctx, "2-1", 2, false); err != nil {
		t.Errorf("sysfs without USB: %v", err)
	}
	if err := noUSB.SetPortPower(ctx, "1-1", 1, false); err == nil || !strings.Contains(err.Error(), "no USB access") {
		t.Errorf("no attribute, no USB: %v", err)
	}
}
