//go:build !cgo

package libusb

import (
	"context"
	"fmt"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/usb"
)

// Session stands in for the libusb session in a flashstation built
// without cgo: every method fails with ErrUnavailable.
type Session struct{}

// New returns the session; without cgo it can do nothing.
func New() *Session { return &Session{} }

// Close does nothing.
func (s *Session) Close() error { return nil }

// Available says USB access is not there: this build has no libusb.
func (s *Session) Available() error { return ErrUnavailable }

// OpenFastboot fails: there is no libusb.
func (s *Session) OpenFastboot(_ context.Context, portPath string) (flash.FastbootTransport, error) {
	return nil, fmt.Errorf("fastboot on USB port %s: %w", portPath, ErrUnavailable)
}

// SetPortPower fails: there is no libusb.
func (s *Session) SetPortPower(_ context.Context, hub string, port int, on bool) error {
	return portError(hub, port, on, ErrUnavailable)
}

// HubDescriptor fails: there is no libusb.
func (s *Session) HubDescriptor(_ context.Context, hub string) (usb.HubDescriptor, error) {
	return usb.HubDescriptor{}, fmt.Errorf("hub %s descriptor: %w", hub, ErrUnavailable)
}
