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

// CyclePort powers a hub port off for off, then on again (a boot
// trigger: the board restarts from its storage). The port is switched on
// again even when ctx ends early: a slot is never left unpowered.
func CyclePort(ctx context.Context, p PortPower, hub string, port int, off time.Duration) error {
	if err := p.SetPortPower(ctx, hub, port, false); err != nil {
		return err
	}
	t := time.NewTimer(off)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return p.SetPortPower(context.WithoutCancel(ctx), hub, port, true)
}
