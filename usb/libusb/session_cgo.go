//go:build cgo

package libusb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/gousb"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/usb"
)

// controlTimeout bounds a hub control request when ctx has no sooner
// deadline.
const controlTimeout = 5 * time.Second

// Session is the process's libusb session. Its context is opened on first
// use (a bench without fastboot or hub power never opens libusb) and
// closed by Close; a Session is safe for concurrent use.
type Session struct {
	mu     sync.Mutex
	ctx    *gousb.Context
	err    error // of the first open, kept
	closed bool
}

// New returns a session that opens libusb when first used.
func New() *Session { return &Session{} }

// Close closes the libusb context, if it was opened. Fastboot connections
// should be closed first.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.ctx == nil {
		return nil
	}
	return s.ctx.Close()
}

// Available opens libusb if it is not open yet, and says whether it
// started (the station asks at its start, before a board needs it).
func (s *Session) Available() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if s.ctx == nil && s.err == nil {
		s.ctx, s.err = newContext()
	}
	return s.err
}

// newContext opens a libusb context; gousb panics when libusb cannot start.
func newContext() (c *gousb.Context, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("libusb: %v", p)
		}
	}()
	return gousb.NewContext(), nil
}

// open opens the device at a port path, filtered by match.
func (s *Session) open(portPath string, match func(*gousb.DeviceDesc) bool) (*gousb.Device, error) {
	bus, ports, err := usb.ParsePortPath(portPath)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if s.ctx == nil && s.err == nil {
		s.ctx, s.err = newContext()
	}
	if s.err != nil {
		return nil, s.err
	}
	devs, err := s.ctx.OpenDevices(func(d *gousb.DeviceDesc) bool {
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

func isHub(d *gousb.DeviceDesc) bool { return d.Class == gousb.ClassHub }

// timeoutFor is the control timeout for a request made under ctx.
func timeoutFor(ctx context.Context) time.Duration {
	t := controlTimeout
	if dl, ok := ctx.Deadline(); ok {
		t = min(t, max(time.Until(dl), time.Millisecond))
	}
	return t
}

// SetPortPower switches a hub's downstream port on or off.
func (s *Session) SetPortPower(ctx context.Context, hub string, port int, on bool) error {
	if err := ctx.Err(); err != nil {
		return portError(hub, port, on, err)
	}
	dev, err := s.open(hub, isHub)
	if err != nil {
		return portError(hub, port, on, err)
	}
	defer dev.Close()
	dev.ControlTimeout = timeoutFor(ctx)
	if _, err := dev.Control(reqTypeClassOther, powerRequest(on), featPortPower, uint16(port), nil); err != nil {
		return portError(hub, port, on, err)
	}
	return nil
}

// HubDescriptor reads a hub's class descriptor (the SuperSpeed one from a
// USB 3 hub).
func (s *Session) HubDescriptor(ctx context.Context, hub string) (usb.HubDescriptor, error) {
	if err := ctx.Err(); err != nil {
		return usb.HubDescriptor{}, err
	}
	dev, err := s.open(hub, isHub)
	if err != nil {
		return usb.HubDescriptor{}, fmt.Errorf("hub %s descriptor: %w", hub, err)
	}
	defer dev.Close()
	dev.ControlTimeout = timeoutFor(ctx)
	typ := uint16(usb.DescTypeHub)
	if dev.Desc.Spec >= gousb.Version(3, 0) {
		typ = usb.DescTypeSSHub
	}
	buf := make([]byte, hubDescriptorBytes)
	n, err := dev.Control(reqTypeClassDevIn, reqGetDescriptor, typ<<8, 0, buf)
	if err != nil {
		return usb.HubDescriptor{}, fmt.Errorf("hub %s descriptor: %w", hub, err)
	}
	d, err := usb.ParseHubDescriptor(buf[:n])
	if err != nil {
		return usb.HubDescriptor{}, fmt.Errorf("hub %s: %w", hub, err)
	}
	return d, nil
}

// fastbootConn is a fastboot device's bulk interface (class ff/42/03).
type fastbootConn struct {
	dev  *gousb.Device
	cfg  *gousb.Config
	intf *gousb.Interface
	in   *gousb.InEndpoint
	out  *gousb.OutEndpoint
	once sync.Once
}

// OpenFastboot claims the fastboot interface of the device at a port path.
func (s *Session) OpenFastboot(ctx context.Context, portPath string) (flash.FastbootTransport, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dev, err := s.open(portPath, nil)
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
			f := &fastbootConn{dev: dev, cfg: cfg, intf: intf}
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
func (f *fastbootConn) Send(p []byte) error {
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
func (f *fastbootConn) Recv() ([]byte, error) {
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
func (f *fastbootConn) Close() error {
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
