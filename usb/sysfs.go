// Package usb finds what is plugged into the bench's USB ports: devices by
// port path (bus-port.port..., as sysfs names them), the disks and serial
// ports they provide, fastboot interfaces, hubs and their USB 2/3 peers.
// It reads sysfs only and is pure Go (it builds with CGO_ENABLED=0). What
// the kernel offers no file for (fastboot bulk transfers, hub port power,
// hub descriptors) is declared here as small interfaces (PortPower,
// HubReader) and done by the usb/libusb adapter, the only importer of
// gousb.
package usb

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Device is a USB device found in sysfs.
type Device struct {
	PortPath     string `json:"port_path"` // e.g. 1-1.4.2
	Bus          int    `json:"bus"`
	Address      int    `json:"address"`
	VID          string `json:"vid"` // 4 hex digits
	PID          string `json:"pid"`
	Serial       string `json:"serial,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Product      string `json:"product,omitempty"`
	SpeedMbps    string `json:"speed_mbps,omitempty"`
	Hub          bool   `json:"hub,omitempty"`
	HubPorts     int    `json:"hub_ports,omitempty"`
	// PeerHub is a hub's twin on the other bus of a USB 3 hub (its USB 2
	// half for a SuperSpeed hub and the other way round), from sysfs port
	// peer links.
	PeerHub string `json:"peer_hub,omitempty"`
	// PowerSwitching is how a hub switches port power (per-port, ganged,
	// none), from its hub descriptor: sysfs does not tell, so Devices
	// leaves it empty and a caller with a HubReader fills it.
	PowerSwitching string   `json:"power_switching,omitempty"`
	Fastboot       bool     `json:"fastboot,omitempty"` // has a ff/42/03 interface
	Disks          []string `json:"disks,omitempty"`    // /dev paths of its whole disks
	TTYs           []string `json:"ttys,omitempty"`     // /dev paths of its serial ports
	Kind           string   `json:"kind,omitempty"`     // what it looks like to a bench
}

// SerialPort is a serial device (USB-serial adapter, CDC ACM, or a
// built-in UART) with the names it can be opened by.
type SerialPort struct {
	Device    string `json:"device"` // /dev/ttyUSB0
	ByID      string `json:"by_id,omitempty"`
	ByPath    string `json:"by_path,omitempty"`
	PortPath  string `json:"port_path,omitempty"` // USB port of the adapter
	Interface string `json:"interface,omitempty"` // e.g. 1-1.2:1.0
	VID       string `json:"vid,omitempty"`
	PID       string `json:"pid,omitempty"`
	Serial    string `json:"serial,omitempty"`
	Product   string `json:"product,omitempty"`
	Driver    string `json:"driver,omitempty"`
}

// Sysfs reads the kernel's view; Root is "/sys" and Dev "/dev" except in
// tests.
type Sysfs struct {
	Root string
	Dev  string
}

// System is the running system's sysfs.
var System = Sysfs{Root: "/sys", Dev: "/dev"}

var portRe = regexp.MustCompile(`^[0-9]+-[0-9]+(\.[0-9]+)*$`)

// ValidPortPath reports whether s is a USB port path such as 1-1.4.2.
func ValidPortPath(s string) bool { return portRe.MatchString(s) }

func read(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readInt(path string) int {
	n, _ := strconv.Atoi(read(path))
	return n
}

// PortOf returns the USB port path in a resolved sysfs path: the last
// component like 1-1.4.2 (the device the path runs through).
func PortOf(sysPath string) string {
	port := ""
	for _, part := range strings.Split(sysPath, "/") {
		if portRe.MatchString(part) {
			port = part
		}
	}
	return port
}

// Devices lists the USB devices by port path, with their disks and
// serial ports.
func (s Sysfs) Devices() ([]Device, error) {
	base := filepath.Join(s.Root, "bus", "usb", "devices")
	entries, err := os.ReadDir(base)
	if os.IsNotExist(err) {
		return nil, nil // no USB on this machine
	}
	if err != nil {
		return nil, fmt.Errorf("usb: %w", err)
	}
	disks := s.blockDisks()
	ports, _ := s.SerialPorts()
	var out []Device
	for _, e := range entries {
		name := e.Name()
		if !portRe.MatchString(name) {
			continue // root hubs (usb1) and interfaces (1-1:1.0)
		}
		dir := filepath.Join(base, name)
		d := Device{
			PortPath: name, Bus: readInt(filepath.Join(dir, "busnum")), Address: readInt(filepath.Join(dir, "devnum")),
			VID: read(filepath.Join(dir, "idVendor")), PID: read(filepath.Join(dir, "idProduct")),
			Serial: read(filepath.Join(dir, "serial")), Manufacturer: read(filepath.Join(dir, "manufacturer")),
			Product: read(filepath.Join(dir, "product")), SpeedMbps: read(filepath.Join(dir, "speed")),
		}
		if read(filepath.Join(dir, "bDeviceClass")) == "09" {
			d.Hub = true
			d.HubPorts = readInt(filepath.Join(dir, "maxchild"))
			d.PeerHub = peerHubOf(dir, name)
		}
		ifaces, _ := filepath.Glob(filepath.Join(dir, name+":*"))
		for _, ifc := range ifaces {
			if read(filepath.Join(ifc, "bInterfaceClass")) == "ff" && read(filepath.Join(ifc, "bInterfaceSubClass")) == "42" &&
				read(filepath.Join(ifc, "bInterfaceProtocol")) == "03" {
				d.Fastboot = true
			}
		}
		d.Disks = disks[name]
		for _, p := range ports {
			if p.PortPath == name {
				d.TTYs = append(d.TTYs, p.Device)
			}
		}
		d.Kind = kindOf(d)
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return lessPort(out[i].PortPath, out[j].PortPath) })
	return out, nil
}

// kindOf names what a device is to the bench.
func kindOf(d Device) string {
	switch {
	case d.Fastboot:
		return "fastboot"
	case len(d.Disks) > 0:
		return "disk"
	case d.VID == "0a5c" && (d.PID == "2763" || d.PID == "2764" || d.PID == "2711" || d.PID == "2712"):
		return "rpi-boot-rom"
	case len(d.TTYs) > 0:
		return "serial"
	case d.Hub:
		return "hub"
	}
	return ""
}

// lessPort orders port paths numerically (1-1.10 after 1-1.9).
func lessPort(a, b string) bool {
	split := func(s string) []int {
		var out []int
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == '.' }) {
			n, _ := strconv.Atoi(f)
			out = append(out, n)
		}
		return out
	}
	x, y := split(a), split(b)
	for i := 0; i < min(len(x), len(y)); i++ {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return len(x) < len(y)
}

// blockDisks maps USB port paths to the whole disks below them.
func (s Sysfs) blockDisks() map[string][]string {
	out := map[string][]string{}
	entries, _ := os.ReadDir(filepath.Join(s.Root, "block"))
	for _, e := range entries {
		real, err := filepath.EvalSymlinks(filepath.Join(s.Root, "block", e.Name()))
		if err != nil {
			continue
		}
		if port := PortOf(real); port != "" {
			out[port] = append(out[port], filepath.Join(s.Dev, e.Name()))
		}
	}
	return out
}

// DisksOn returns the whole disks on any of the given port paths (a slot's
// port and its SuperSpeed twin).
func (s Sysfs) DisksOn(ports ...string) []string {
	all := s.blockDisks()
	var out []string
	for _, p := range ports {
		out = append(out, all[p]...)
	}
	return out
}

// SerialPorts lists serial ports with their stable names and, for USB
// adapters, the adapter's port path.
func (s Sysfs) SerialPorts() ([]SerialPort, error) {
	entries, err := os.ReadDir(filepath.Join(s.Root, "class", "tty"))
	if err != nil {
		return nil, fmt.Errorf("serial ports: %w", err)
	}
	links := s.serialLinks()
	var out []SerialPort
	for _, e := range entries {
		devDir := filepath.Join(s.Root, "class", "tty", e.Name(), "device")
		real, err := filepath.EvalSymlinks(devDir)
		if err != nil {
			continue // virtual ttys have no device
		}
		p := SerialPort{Device: filepath.Join(s.Dev, e.Name())}
		if drv, err := filepath.EvalSymlinks(filepath.Join(devDir, "driver")); err == nil {
			p.Driver = filepath.Base(drv)
		}
		if placeholderDriver(p.Driver) && read(filepath.Join(s.Root, "class", "tty", e.Name(), "type")) == "0" {
			continue // an 8250 placeholder without hardware
		}
		if port := PortOf(real); port != "" {
			p.PortPath = port
			for _, part := range strings.Split(real, "/") {
				if strings.HasPrefix(part, port+":") {
					p.Interface = part
				}
			}
			usbDir := real[:strings.LastIndex(real, "/"+port+"/")+len(port)+1]
			p.VID, p.PID = read(filepath.Join(usbDir, "idVendor")), read(filepath.Join(usbDir, "idProduct"))
			p.Serial, p.Product = read(filepath.Join(usbDir, "serial")), read(filepath.Join(usbDir, "product"))
		}
		l := links[e.Name()]
		p.ByID, p.ByPath = l.byID, l.byPath
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out, nil
}

// placeholderDriver reports whether a tty's device driver is the one of
// the 8250 driver's placeholder ports (ttyS0..ttyS31, most without a
// UART, whose type reads 0): serial8250 up to 6.4 kernels; since 6.5 the
// serial core gives each port its own device on the serial-base bus, whose
// driver is "port".
func placeholderDriver(driver string) bool { return driver == "serial8250" || driver == "port" }

// portDirRe names a hub's port directory in sysfs (1-1-port2, usb2-port1)
// and splits it into the hub and the port number.
var portDirRe = regexp.MustCompile(`^([0-9]+-[0-9]+(?:\.[0-9]+)*|usb[0-9]+)-port([0-9]+)$`)

// peerHubOf returns the hub that a hub's ports are peered with (the other
// half of a USB 3 hub), or "" when none is.
func peerHubOf(dir, name string) string {
	links, _ := filepath.Glob(filepath.Join(dir, ifaceName(name)+":*", name+"-port*", "peer"))
	sort.Slice(links, func(i, j int) bool { return lessPortDir(links[i], links[j]) })
	for _, l := range links {
		if hub, _, ok := peerOf(l); ok {
			return hub
		}
	}
	return ""
}

func lessPortDir(a, b string) bool {
	pa, pb := portDirRe.FindStringSubmatch(filepath.Base(filepath.Dir(a))), portDirRe.FindStringSubmatch(filepath.Base(filepath.Dir(b)))
	if pa == nil || pb == nil {
		return a < b
	}
	x, _ := strconv.Atoi(pa[2])
	y, _ := strconv.Atoi(pb[2])
	return x < y
}

// ifaceName is the device part of a hub's interface names: the hub's
// port path, or N-0 for root hub usbN.
func ifaceName(hub string) string {
	if bus, ok := strings.CutPrefix(hub, "usb"); ok {
		return bus + "-0"
	}
	return hub
}

// peerOf resolves a port's peer link to the peer hub and port.
func peerOf(link string) (hub string, port int, ok bool) {
	real, err := filepath.EvalSymlinks(link)
	if err != nil {
		return "", 0, false
	}
	m := portDirRe.FindStringSubmatch(filepath.Base(real))
	if m == nil {
		return "", 0, false
	}
	port, _ = strconv.Atoi(m[2])
	return m[1], port, true
}

// portDirs returns the sysfs directories of a hub's downstream port
// (.../1-1.4:1.0/1-1.4-port2; a root hub usbN's are .../N-0:1.0/usbN-portM).
func (s Sysfs) portDirs(hub string, port int) []string {
	dir := filepath.Join(s.Root, "bus", "usb", "devices", hub)
	name := filepath.Base(dir)
	dirs, _ := filepath.Glob(filepath.Join(dir, ifaceName(name)+":*", fmt.Sprintf("%s-port%d", name, port)))
	return dirs
}

// PortPeer returns the peer of a hub's downstream port: the same socket's
// port on the other hub of a USB 3 hub (a USB 3 hub is a USB 2 hub and a
// SuperSpeed hub, and a socket has a port on each). ok is false when the
// port has no peer (a USB 2 only hub) or is not there. A root hub's peer
// is named usbN.
func (s Sysfs) PortPeer(hub string, port int) (peerHub string, peerPort int, ok bool) {
	for _, d := range s.portDirs(hub, port) {
		if h, p, ok := peerOf(filepath.Join(d, "peer")); ok {
			return h, p, true
		}
	}
	return "", 0, false
}

// ErrNoPortDisable is SetPortPower's error on a kernel without the port
// disable attribute (Linux before 6.0), or a port sysfs does not show.
var ErrNoPortDisable = errors.New("no sysfs port disable attribute (Linux 6.0 or later has it)")

// SetPortPower switches a hub's downstream port through the kernel, as
// uhubctl does first on Linux 6.0 and later: "1" written to the port's
// disable attribute powers it off (on hubs that switch power) and the hub
// driver leaves it off, "0" enables it again. Switching through libusb
// alone goes behind the hub driver's back. An error wraps
// ErrNoPortDisable when the attribute is not there; another (permission
// denied: see the README's udev rules) says what the write met.
func (s Sysfs) SetPortPower(ctx context.Context, hub string, port int, on bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dirs := s.portDirs(hub, port)
	if len(dirs) == 0 {
		return fmt.Errorf("hub %s port %d: %w", hub, port, ErrNoPortDisable)
	}
	path := filepath.Join(dirs[0], "disable")
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hub %s port %d: %w", hub, port, ErrNoPortDisable)
	}
	if err != nil {
		return fmt.Errorf("hub %s port %d: %w", hub, port, err)
	}
	v := "1"
	if on {
		v = "0"
	}
	_, err = f.WriteString(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("hub %s port %d: write %s: %w", hub, port, path, err)
	}
	return nil
}

type serialLink struct{ byID, byPath string }

// serialLinks reads /dev/serial/by-id and by-path.
func (s Sysfs) serialLinks() map[string]serialLink {
	out := map[string]serialLink{}
	for _, kind := range []string{"by-id", "by-path"} {
		dir := filepath.Join(s.Dev, "serial", kind)
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			target, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			name := filepath.Base(target)
			l := out[name]
			if kind == "by-id" {
				l.byID = filepath.Join(dir, e.Name())
			} else {
				l.byPath = filepath.Join(dir, e.Name())
			}
			out[name] = l
		}
	}
	return out
}

// SerialOnPort returns the serial device of the adapter plugged into a USB
// port path (its first interface when it has several, or the interface
// named as PORT:CONFIG.INTERFACE).
func (s Sysfs) SerialOnPort(port string) (string, error) {
	want, iface, _ := strings.Cut(port, ":")
	ports, err := s.SerialPorts()
	if err != nil {
		return "", err
	}
	var found []SerialPort
	for _, p := range ports {
		if p.PortPath == want && (iface == "" || p.Interface == want+":"+iface) {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		return "", fmt.Errorf("no serial adapter on USB port %s", port)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Interface < found[j].Interface })
	return found[0].Device, nil
}
