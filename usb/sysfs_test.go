package usb_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/usb"
)

// fakeSysfs builds a small sysfs and /dev: a hub on 1-1 with an FTDI
// console adapter on 1-1.2, a fastboot board on 1-1.3 and a UMS board on
// 1-1.4, plus a built-in UART placeholder.
func fakeSysfs(t *testing.T) usb.Sysfs {
	t.Helper()
	root := t.TempDir()
	sys, dev := filepath.Join(root, "sys"), filepath.Join(root, "dev")
	pci := filepath.Join(sys, "devices/pci0000:00/0000:00:14.0/usb1")
	files := map[string]string{
		"1-1/busnum": "1", "1-1/devnum": "2", "1-1/idVendor": "05e3", "1-1/idProduct": "0610",
		"1-1/bDeviceClass": "09", "1-1/maxchild": "4", "1-1/product": "USB2.1 Hub",
		"1-1/1-1.2/busnum": "1", "1-1/1-1.2/devnum": "5", "1-1/1-1.2/idVendor": "0403", "1-1/1-1.2/idProduct": "6001",
		"1-1/1-1.2/serial": "A10KX7Q2", "1-1/1-1.2/product": "FT232R USB UART", "1-1/1-1.2/bDeviceClass": "00",
		"1-1/1-1.3/busnum": "1", "1-1/1-1.3/devnum": "6", "1-1/1-1.3/idVendor": "18d1", "1-1/1-1.3/idProduct": "4ee0",
		"1-1/1-1.3/serial": "FB0001", "1-1/1-1.3/product": "USB download gadget",
		"1-1/1-1.3/1-1.3:1.0/bInterfaceClass": "ff", "1-1/1-1.3/1-1.3:1.0/bInterfaceSubClass": "42", "1-1/1-1.3/1-1.3:1.0/bInterfaceProtocol": "03",
		"1-1/1-1.4/busnum": "1", "1-1/1-1.4/devnum": "7", "1-1/1-1.4/idVendor": "0525", "1-1/1-1.4/idProduct": "a4a5",
		"1-1/1-1.4/serial": "UMS0042", "1-1/1-1.4/product": "USB download gadget",
		"1-1/1-1.4/1-1.4:1.0/bInterfaceClass":                          "08",
		"1-1/1-1.4/1-1.4:1.0/host6/target6:0:0/6:0:0:0/block/sdb/size": "7634944",
		"1-1/1-1.2/1-1.2:1.0/ttyUSB0/tty/ttyUSB0/dev":                  "188:0",
	}
	for p, content := range files {
		full := filepath.Join(pci, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		os.WriteFile(full, []byte(content+"\n"), 0o644)
	}
	links := map[string]string{
		"bus/usb/devices/usb1":    pci,
		"bus/usb/devices/1-1":     pci + "/1-1",
		"bus/usb/devices/1-1:1.0": pci + "/1-1/1-1:1.0",
		"bus/usb/devices/1-1.2":   pci + "/1-1/1-1.2",
		"bus/usb/devices/1-1.3":   pci + "/1-1/1-1.3",
		"bus/usb/devices/1-1.4":   pci + "/1-1/1-1.4",
		"block/sdb":               pci + "/1-1/1-1.4/1-1.4:1.0/host6/target6:0:0/6:0:0:0/block/sdb",
		"block/vda":               sys + "/devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
		"class/tty/ttyUSB0":       pci + "/1-1/1-1.2/1-1.2:1.0/ttyUSB0/tty/ttyUSB0",
		"class/tty/ttyS0":         sys + "/devices/platform/serial8250/tty/ttyS0",
		"class/tty/tty1":          sys + "/devices/virtual/tty/tty1",
	}
	for l, target := range links {
		full := filepath.Join(sys, l)
		os.MkdirAll(filepath.Dir(full), 0o755)
		os.MkdirAll(target, 0o755)
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	// tty device links and drivers
	os.Symlink(pci+"/1-1/1-1.2/1-1.2:1.0/ttyUSB0", pci+"/1-1/1-1.2/1-1.2:1.0/ttyUSB0/tty/ttyUSB0/device")
	os.MkdirAll(sys+"/bus/usb-serial/drivers/ftdi_sio", 0o755)
	os.Symlink(sys+"/bus/usb-serial/drivers/ftdi_sio", pci+"/1-1/1-1.2/1-1.2:1.0/ttyUSB0/driver")
	os.MkdirAll(sys+"/devices/platform/serial8250", 0o755)
	os.Symlink(sys+"/devices/platform/serial8250", sys+"/devices/platform/serial8250/tty/ttyS0/device")
	os.MkdirAll(sys+"/bus/platform/drivers/serial8250", 0o755)
	os.Symlink(sys+"/bus/platform/drivers/serial8250", sys+"/devices/platform/serial8250/driver")
	os.WriteFile(sys+"/devices/platform/serial8250/tty/ttyS0/type", []byte("0\n"), 0o644)
	os.MkdirAll(dev+"/serial/by-id", 0o755)
	os.MkdirAll(dev+"/serial/by-path", 0o755)
	os.Symlink("../../ttyUSB0", dev+"/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KX7Q2-if00-port0")
	os.Symlink("../../ttyUSB0", dev+"/serial/by-path/pci-0000:00:14.0-usb-0:1.2:1.0-port0")
	return usb.Sysfs{Root: sys, Dev: dev}
}

func TestDevices(t *testing.T) {
	s := fakeSysfs(t)
	devs, err := s.Devices()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range devs {
		got = append(got, d.PortPath+"="+d.Kind)
	}
	if strings.Join(got, " ") != "1-1=hub 1-1.2=serial 1-1.3=fastboot 1-1.4=disk" {
		t.Fatalf("devices: %v", got)
	}
	ums := devs[3]
	if ums.Serial != "UMS0042" || ums.VID != "0525" || len(ums.Disks) != 1 || !strings.HasSuffix(ums.Disks[0], "/sdb") || ums.Bus != 1 || ums.Address != 7 {
		t.Errorf("ums board %+v", ums)
	}
	if !devs[0].Hub || devs[0].HubPorts != 4 {
		t.Errorf("hub %+v", devs[0])
	}
	if d := s.DisksOn("1-1.9", "1-1.4"); len(d) != 1 {
		t.Errorf("DisksOn = %v", d)
	}
}

func TestSerialPorts(t *testing.T) {
	s := fakeSysfs(t)
	ports, err := s.SerialPorts()
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 1 {
		t.Fatalf("ports %+v (the 8250 placeholder and virtual ttys are not ports)", ports)
	}
	p := ports[0]
	if p.PortPath != "1-1.2" || p.Interface != "1-1.2:1.0" || p.VID != "0403" || p.Serial != "A10KX7Q2" || p.Driver != "ftdi_sio" ||
		!strings.HasSuffix(p.ByID, "if00-port0") || !strings.Contains(p.ByPath, "usb-0:1.2:1.0") {
		t.Errorf("port %+v", p)
	}
	if dev, err := s.SerialOnPort("1-1.2"); err != nil || !strings.HasSuffix(dev, "/ttyUSB0") {
		t.Errorf("SerialOnPort = %q %v", dev, err)
	}
	if _, err := s.SerialOnPort("1-1.7"); err == nil {
		t.Error("empty port has a serial adapter")
	}
}

func TestParsePortPath(t *testing.T) {
	bus, ports, err := usb.ParsePortPath("3-1.4.2")
	if err != nil || bus != 3 || len(ports) != 3 || ports[0] != 1 || ports[2] != 2 {
		t.Errorf("%d %v %v", bus, ports, err)
	}
	for _, bad := range []string{"usb1", "1-1:1.0", "", "1-"} {
		if _, _, err := usb.ParsePortPath(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSystemDoesNotFail(t *testing.T) {
	// Whatever this machine has (often no USB at all), listing works.
	if _, err := usb.System.Devices(); err != nil {
		t.Error(err)
	}
}

// linux68 is the testdata sysfs of a 6.8 kernel (see its README.md).
var linux68 = usb.Sysfs{Root: "testdata/linux-6.8/sys", Dev: "testdata/linux-6.8/dev"}

func TestLinux6Devices(t *testing.T) {
	devs, err := linux68.Devices()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range devs {
		s := d.PortPath + "=" + d.Kind
		if d.Hub {
			s += "(peer " + d.PeerHub + ")"
		}
		got = append(got, s)
	}
	want := "1-1=hub(peer 2-1) 1-1.2=fastboot 1-1.3=serial 1-1.4=hub(peer ) 2-1=hub(peer 1-1) 2-1.1=disk"
	if strings.Join(got, " ") != want {
		t.Fatalf("devices:\n got %v\nwant %v", strings.Join(got, " "), want)
	}
	if d := devs[5]; len(d.Disks) != 1 || d.Disks[0] != "testdata/linux-6.8/dev/sda" || d.SpeedMbps != "5000" {
		t.Errorf("ums board %+v", d)
	}
	if d := devs[2]; len(d.TTYs) != 1 || d.TTYs[0] != "testdata/linux-6.8/dev/ttyUSB0" {
		t.Errorf("console adapter %+v", d)
	}
}

// TestLinux6PlaceholderPorts: since 6.5 the serial core gives every port
// a device on the serial-base bus whose driver is "port" (not serial8250):
// the 8250 placeholders (type 0) are still left out, a real UART is kept.
func TestLinux6PlaceholderPorts(t *testing.T) {
	ports, err := linux68.SerialPorts()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ports {
		got = append(got, filepath.Base(p.Device)+"("+p.Driver+")")
	}
	if want := "ttyS0(port) ttyUSB0(ftdi_sio)"; strings.Join(got, " ") != want {
		t.Fatalf("ports %v, want %s", got, want)
	}
	if p := ports[1]; p.PortPath != "1-1.3" || p.Interface != "1-1.3:1.0" || p.Serial != "A6X0KQ2" || !strings.HasSuffix(p.ByID, "A6X0KQ2-if00-port0") {
		t.Errorf("console adapter %+v", p)
	}
	if dev, err := linux68.SerialOnPort("1-1.3"); err != nil || dev != "testdata/linux-6.8/dev/ttyUSB0" {
		t.Errorf("SerialOnPort = %q %v", dev, err)
	}
}

func TestLinux6PortPeers(t *testing.T) {
	for _, tc := range []struct {
		hub      string
		port     int
		peerHub  string
		peerPort int
	}{
		{"1-1", 1, "2-1", 1},
		{"1-1", 4, "2-1", 4},
		{"2-1", 2, "1-1", 2},
		{"usb1", 1, "usb2", 1},
		{"usb2", 3, "usb1", 3},
		{"1-1.4", 1, "", 0}, // a USB 2 only hub
		{"1-1", 9, "", 0},   // no such port
		{"3-1", 1, "", 0},   // no such hub
	} {
		h, p, ok := linux68.PortPeer(tc.hub, tc.port)
		if h != tc.peerHub || p != tc.peerPort || ok != (tc.peerHub != "") {
			t.Errorf("PortPeer(%s, %d) = %q %d %v, want %q %d", tc.hub, tc.port, h, p, ok, tc.peerHub, tc.peerPort)
		}
	}
}

func TestHubDescriptor(t *testing.T) {
	for _, tc := range []struct {
		desc  []byte
		ports int
		mode  string
		bad   bool
	}{
		// USB 2.0 hub, 4 ports, per-port power switching (VL817's USB 2 half)
		{desc: []byte{0x09, 0x29, 0x04, 0xe9, 0x00, 0x32, 0x64, 0x00, 0xff}, ports: 4, mode: "per-port"},
		// SuperSpeed hub descriptor, 4 ports, per-port
		{desc: []byte{0x0c, 0x2a, 0x04, 0x09, 0x00, 0x32, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, ports: 4, mode: "per-port"},
		// ganged (bits 00), as many cheap hubs
		{desc: []byte{0x09, 0x29, 0x07, 0xe0, 0x00, 0x32, 0x64, 0x00, 0xff}, ports: 7, mode: "ganged"},
		// no power switching (bits 1x)
		{desc: []byte{0x09, 0x29, 0x04, 0x02, 0x00, 0x32, 0x64, 0x00, 0xff}, ports: 4, mode: "none"},
		{desc: []byte{0x09, 0x29, 0x04, 0x03, 0x00, 0x32, 0x64, 0x00, 0xff}, ports: 4, mode: "none"},
		{desc: []byte{0x09, 0x29, 0x04}, bad: true},
		{desc: []byte{0x12, 0x01, 0x00, 0x02, 0x09, 0x00}, bad: true}, // a device descriptor
		{desc: []byte{0x20, 0x29, 0x04, 0x01, 0x00}, bad: true},       // bLength beyond what was read
	} {
		d, err := usb.ParseHubDescriptor(tc.desc)
		if tc.bad {
			if err == nil {
				t.Errorf("% x accepted: %+v", tc.desc, d)
			}
			continue
		}
		if err != nil || d.Ports != tc.ports || d.Switching().String() != tc.mode {
			t.Errorf("% x: %+v %v %v, want %d ports %s", tc.desc, d, d.Switching(), err, tc.ports, tc.mode)
		}
	}
}

// TestLinux6PortsOf: a slot on a USB 3 hub's port is both halves' ports,
// found through sysfs; on a USB 2 only hub, its port alone.
func TestLinux6PortsOf(t *testing.T) {
	got := usb.PortsOf(linux68, "1-1", 1)
	if len(got) != 2 || got[0] != (usb.Port{Hub: "1-1", Port: 1}) || got[1] != (usb.Port{Hub: "2-1", Port: 1}) {
		t.Errorf("1-1 port 1: %v", got)
	}
	if got := usb.PortsOf(linux68, "1-1.4", 1); len(got) != 1 {
		t.Errorf("1-1.4 port 1: %v", got)
	}
}
