package libusb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/usb"
)

// controlTimeout bounds a hub control request when ctx has no sooner
// deadline.
const controlTimeout = 5 * time.Second

// Session is the process's libusb session. Its backend is opened on first
// use (a bench without fastboot or hub power never opens libusb) and
// closed by Close; a Session is safe for concurrent use.
type Session struct {
	open func() (Backend, error)

	mu     sync.Mutex
	b      Backend
	err    error // of the first open, kept
	closed bool
}

// New returns a session that opens libusb (gousb) when first used; built
// without cgo, every use fails with ErrUnavailable.
func New() *Session { return &Session{open: openGousb} }

// NewWith returns a session on a backend of the caller's (a playback in
// tests, a recorder); Close closes it.
func NewWith(b Backend) *Session {
	return &Session{open: func() (Backend, error) { return b, nil }}
}

// Close closes the backend, if it was opened. Fastboot connections
// should be closed first.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.b == nil {
		return nil
	}
	return s.b.Close()
}

// Available opens libusb if it is not open yet, and says whether it
// started (the station asks at its start, before a board needs it).
func (s *Session) Available() error {
	_, err := s.backend()
	return err
}

func (s *Session) backend() (Backend, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if s.b == nil && s.err == nil {
		s.b, s.err = s.open()
	}
	return s.b, s.err
}

// device opens the device at a port path; hub: it must be a hub.
func (s *Session) device(portPath string, hub bool) (Device, error) {
	bus, ports, err := usb.ParsePortPath(portPath)
	if err != nil {
		return nil, err
	}
	b, err := s.backend()
	if err != nil {
		return nil, fmt.Errorf("usb %s: %w", portPath, err)
	}
	d, err := b.Open(bus, ports)
	if err != nil {
		return nil, fmt.Errorf("usb %s: %w", portPath, err)
	}
	if hub && d.Desc().Class != ClassHub {
		d.Close()
		return nil, fmt.Errorf("usb %s: the device there is not a hub (class %#02x)", portPath, d.Desc().Class)
	}
	return d, nil
}

// timeoutFor is the control timeout for a request made under ctx.
func timeoutFor(ctx context.Context) time.Duration {
	t := controlTimeout
	if dl, ok := ctx.Deadline(); ok {
		t = min(t, max(time.Until(dl), time.Millisecond))
	}
	return t
}

// SetPortPower switches a hub's downstream port on or off: the hub class
// request SET_FEATURE (on) or CLEAR_FEATURE (off) of PORT_POWER, to the
// port (USB 2.0 11.24.2.7, 11.24.2.2), as uhubctl does.
func (s *Session) SetPortPower(ctx context.Context, hub string, port int, on bool) error {
	if err := ctx.Err(); err != nil {
		return portError(hub, port, on, err)
	}
	if port < 1 || port > 255 {
		return portError(hub, port, on, errors.New("no such port"))
	}
	dev, err := s.device(hub, true)
	if err != nil {
		return portError(hub, port, on, err)
	}
	defer dev.Close()
	if _, err := dev.Control(reqTypeClassOther, powerRequest(on), featPortPower, uint16(port), nil, timeoutFor(ctx)); err != nil {
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
	dev, err := s.device(hub, true)
	if err != nil {
		return usb.HubDescriptor{}, fmt.Errorf("hub %s descriptor: %w", hub, err)
	}
	defer dev.Close()
	typ := uint16(usb.DescTypeHub)
	if dev.Desc().USB >= 0x0300 {
		typ = usb.DescTypeSSHub
	}
	buf := make([]byte, hubDescriptorBytes)
	n, err := dev.Control(reqTypeClassDevIn, reqGetDescriptor, typ<<8, 0, buf, timeoutFor(ctx))
	if err != nil {
		return usb.HubDescriptor{}, fmt.Errorf("hub %s descriptor: %w", hub, err)
	}
	d, err := usb.ParseHubDescriptor(buf[:n])
	if err != nil {
		return usb.HubDescriptor{}, fmt.Errorf("hub %s: %w", hub, err)
	}
	return d, nil
}

// OpenFastboot claims the fastboot interface (class ff/42/03) of the
// device at a port path.
func (s *Session) OpenFastboot(ctx context.Context, portPath string) (flash.FastbootTransport, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dev, err := s.device(portPath, false)
	if err != nil {
		return nil, err
	}
	for _, alt := range dev.Desc().Interfaces {
		if alt.Class != ClassVendor || alt.SubClass != fastbootSubClass || alt.Protocol != fastbootProtocol {
			continue
		}
		var in, out *EndpointDesc
		for i := range alt.Endpoints {
			ep := &alt.Endpoints[i]
			switch {
			case !ep.Bulk:
			case ep.In && in == nil:
				in = ep
			case !ep.In && out == nil:
				out = ep
			}
		}
		if in == nil || out == nil || out.MaxPacket <= 0 {
			dev.Close()
			return nil, fmt.Errorf("usb %s: fastboot interface %d lacks bulk endpoints", portPath, alt.Number)
		}
		pipe, err := dev.Claim(alt.Number, alt.Alternate, in.Number, out.Number)
		if err != nil {
			dev.Close()
			return nil, fmt.Errorf("usb %s: claim fastboot interface %d: %w", portPath, alt.Number, err)
		}
		return newFastbootConn(portPath, dev, pipe, in.MaxPacket, out.MaxPacket), nil
	}
	dev.Close()
	return nil, fmt.Errorf("usb %s: no fastboot interface (class ff/42/03)", portPath)
}
