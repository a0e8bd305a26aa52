package usb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/gousb"
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

// LibUSB is the libusb session for what sysfs cannot do: fastboot bulk
// transfers and hub port power. Open it once per process.
type LibUSB struct {
	mu  sync.Mutex
	ctx *gousb.Context
}

// OpenLibUSB starts a libusb session.
func OpenLibUSB() (l *LibUSB, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("libusb: %v", p)
		}
	}()
	return &LibUSB{ctx: gousb.NewContext()}, nil
}

// Close ends the session.
func (l *LibUSB) Close() error { return l.ctx.Close() }

// open opens the device at a port path, filtered by match.
func (l *LibUSB) open(portPath string, match func(*gousb.DeviceDesc) bool) (*gousb.Device, error) {
	bus, ports, err := ParsePortPath(portPath)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	devs, err := l.ctx.OpenDevices(func(d *gousb.DeviceDesc) bool {
		return d.Bus == bus && slices.Equal(d.Path, ports) && (match == nil || match(d))
	})
	if len(devs) == 0 {
		if err != nil {
			return nil, fmt.Errorf("usb %s: %w", portPath, err)
		}
		return nil, fmt.Errorf("usb %s: no matching device", portPath)
	}
	for _, d := range devs[1:] {
		d.Close()
	}
	return devs[0], nil
}

// Hub class requests (USB 2.0 11.24.2): SET_FEATURE and CLEAR_FEATURE of
// PORT_POWER on a downstream port.
const (
	reqTypeClassOther = 0x23
	reqClearFeature   = 0x01
	reqSetFeature     = 0x03
	featPortPower     = 8
)

// SetPortPower switches a hub's downstream port on or off. hub is the
// hub's port path, port its port number (as uhubctl -l HUB -p PORT).
func (l *LibUSB) SetPortPower(hub string, port int, on bool) error {
	dev, err := l.open(hub, func(d *gousb.DeviceDesc) bool { return d.Class == gousb.ClassHub })
	if err != nil {
		return err
	}
	defer dev.Close()
	req := uint8(reqClearFeature)
	if on {
		req = reqSetFeature
	}
	if _, err := dev.Control(reqTypeClassOther, req, featPortPower, uint16(port), nil); err != nil {
		return fmt.Errorf("hub %s port %d power: %w", hub, port, err)
	}
	return nil
}

// PortPower switches hub ports; *LibUSB is one, usbtest.Hubs a fake.
type PortPower interface {
	SetPortPower(hub string, port int, on bool) error
}

// CyclePort powers a hub port off for off, then on again (a boot
// trigger: the board restarts from its storage). The port is switched on
// again even when ctx ends early: a slot is never left unpowered.
func CyclePort(ctx context.Context, p PortPower, hub string, port int, off time.Duration) error {
	if err := p.SetPortPower(hub, port, false); err != nil {
		return err
	}
	t := time.NewTimer(off)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return p.SetPortPower(hub, port, true)
}

// FastbootUSB is a fastboot device's bulk interface (class ff/42/03).
type FastbootUSB struct {
	dev  *gousb.Device
	cfg  *gousb.Config
	intf *gousb.Interface
	in   *gousb.InEndpoint
	out  *gousb.OutEndpoint
	once sync.Once
}

// OpenFastboot claims the fastboot interface of the device at a port path.
func (l *LibUSB) OpenFastboot(portPath string) (*FastbootUSB, error) {
	dev, err := l.open(portPath, nil)
	if err != nil {
		return nil, err
	}
	_ = dev.SetAutoDetach(true)
	cfgNum, err := dev.ActiveConfigNum()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("usb %s: %w", portPath, err)
	}
	desc := dev.Desc.Configs[cfgNum]
	for _, id := range desc.Interfaces {
		for _, alt := range id.AltSettings {
			if alt.Class != gousb.ClassVendorSpec || alt.SubClass != 0x42 || alt.Protocol != 0x03 {
				continue
			}
			cfg, err := dev.Config(cfgNum)
			if err != nil {
				dev.Close()
				return nil, fmt.Errorf("usb %s: %w", portPath, err)
			}
			intf, err := cfg.Interface(alt.Number, alt.Alternate)
			if err != nil {
				cfg.Close()
				dev.Close()
				return nil, fmt.Errorf("usb %s: claim fastboot interface: %w", portPath, err)
			}
			f := &FastbootUSB{dev: dev, cfg: cfg, intf: intf}
			for _, ep := range alt.Endpoints {
				if ep.TransferType != gousb.TransferTypeBulk {
					continue
				}
				if ep.Direction == gousb.EndpointDirectionIn && f.in == nil {
					f.in, _ = intf.InEndpoint(ep.Number)
				}
				if ep.Direction == gousb.EndpointDirectionOut && f.out == nil {
					f.out, _ = intf.OutEndpoint(ep.Number)
				}
			}
			if f.in == nil || f.out == nil {
				f.Close()
				return nil, fmt.Errorf("usb %s: fastboot interface lacks bulk endpoints", portPath)
			}
			return f, nil
		}
	}
	dev.Close()
	return nil, fmt.Errorf("usb %s: no fastboot interface (class ff/42/03)", portPath)
}

// Send writes one packet (a command or download data).
func (f *FastbootUSB) Send(p []byte) error {
	for len(p) > 0 {
		n, err := f.out.Write(p)
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// Recv reads one response packet (at most 64 bytes on USB).
func (f *FastbootUSB) Recv() ([]byte, error) {
	buf := make([]byte, 256)
	n, err := f.in.Read(buf)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("empty fastboot response")
	}
	return buf[:n], nil
}

// Close releases the interface and the device.
func (f *FastbootUSB) Close() error {
	var err error
	f.once.Do(func() {
		if f.intf != nil {
			f.intf.Close()
		}
		if f.cfg != nil {
			err = f.cfg.Close()
		}
		if cerr := f.dev.Close(); err == nil {
			err = cerr
		}
	})
	return err
}
