package usb

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParsePortPath splits a port path such as 1-1.4.2 into its bus and the
// chain of hub ports.
func ParsePortPath(p string) (bus int, ports []int, err error) {
	if !ValidPortPath(p) {
		return 0, nil, fmt.Errorf("%q is not a USB port path", p)
	}
	b, rest, _ := strings.Cut(p, "-")
	bus, _ = strconv.Atoi(b)
	for _, f := range strings.Split(rest, ".") {
		n, _ := strconv.Atoi(f)
		ports = append(ports, n)
	}
	return bus, ports, nil
}

// PortPower switches hub ports: hub is the hub's port path, port its
// downstream port number (as uhubctl -l HUB -p PORT). The usb/libusb
// adapter is the real one, usbtest.Hubs a fake.
type PortPower interface {
	SetPortPower(ctx context.Context, hub string, port int, on bool) error
}

// PeerFinder finds a hub port's twin: a USB 3 hub is two hubs (its USB 2
// half and its SuperSpeed half) whose ports are peers; power reaches a
// board until both are off. Sysfs is one (the ports' peer links).
type PeerFinder interface {
	PortPeer(hub string, port int) (peerHub string, peerPort int, ok bool)
}

// A Port is one hub port: hub's port path and its downstream port number.
type Port struct {
	Hub  string
	Port int
}

func (p Port) String() string { return p.Hub + " port " + strconv.Itoa(p.Port) }

// PortsOf returns a hub port and, when peers finds one, its twin on the
// other half of a USB 3 hub (a nil peers: the port alone).
func PortsOf(peers PeerFinder, hub string, port int) []Port {
	out := []Port{{hub, port}}
	if peers != nil {
		if h, p, ok := peers.PortPeer(hub, port); ok && (h != hub || p != port) {
			out = append(out, Port{h, p})
		}
	}
	return out
}

// CyclePort powers a hub port off for off, then on again (a boot
// trigger: the board restarts from its storage). The port is switched on
// again even when ctx ends early: a slot is never left unpowered.
func CyclePort(ctx context.Context, p PortPower, hub string, port int, off time.Duration) error {
	return CyclePorts(ctx, p, []Port{{hub, port}}, off)
}

// CyclePorts powers ports off, in order, for off, then on again in the
// reverse order: the two halves of a USB 3 hub port (PortsOf) are switched
// together, so the board really loses power. Every port is switched on
// again, even when ctx ends early or a switch fails: a slot is never left
// unpowered; the first error is returned.
func CyclePorts(ctx context.Context, p PortPower, ports []Port, off time.Duration) error {
	switched, first := SwitchOff(ctx, p, ports)
	if first == nil {
		t := time.NewTimer(off)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if err := SwitchOn(ctx, p, switched); err != nil && first == nil {
		first = err
	}
	return first
}

// SwitchOff powers ports off, in order, and returns those it switched
// (all of them, or those before the first that failed, with its error):
// SwitchOn must power them on again.
func SwitchOff(ctx context.Context, p PortPower, ports []Port) ([]Port, error) {
	for i, pt := range ports {
		if err := p.SetPortPower(ctx, pt.Hub, pt.Port, false); err != nil {
			return ports[:i], fmt.Errorf("%s off: %w", pt, err)
		}
	}
	return ports, nil
}

// SwitchOn powers ports on in the reverse order of SwitchOff, every one
// even when ctx has ended or a switch fails (a slot is never left
// unpowered), and returns the first error.
func SwitchOn(ctx context.Context, p PortPower, ports []Port) error {
	var first error
	on := context.WithoutCancel(ctx)
	for i := len(ports) - 1; i >= 0; i-- {
		if err := p.SetPortPower(on, ports[i].Hub, ports[i].Port, true); err != nil && first == nil {
			first = fmt.Errorf("%s on: %w", ports[i], err)
		}
	}
	return first
}
