//go:build cgo

package libusb_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/usb/libusb"
)

// TestSessionErrors: what this machine cannot reach fails with the port
// named, never ErrUnavailable (this build has libusb), and a closed
// session refuses.
func TestSessionErrors(t *testing.T) {
	ctx := context.Background()
	s := libusb.New()
	// libusb starts here (a build with cgo on Linux), or says why not.
	if err := s.Available(); err != nil && errors.Is(err, libusb.ErrUnavailable) {
		t.Errorf("Available with cgo: %v", err)
	}
	if err := s.SetPortPower(ctx, "not-a-port", 1, false); err == nil || !strings.Contains(err.Error(), "hub not-a-port port 1 power off") {
		t.Errorf("bad hub path: %v", err)
	}
	// No device sits at 99-9 (or libusb cannot start here): an error either way.
	err := s.SetPortPower(ctx, "99-9", 2, true)
	if err == nil || !strings.Contains(err.Error(), "hub 99-9 port 2 power on") || errors.Is(err, libusb.ErrUnavailable) {
		t.Errorf("missing hub: %v", err)
	}
	if _, err := s.HubDescriptor(ctx, "99-9"); err == nil || !strings.Contains(err.Error(), "hub 99-9") {
		t.Errorf("missing hub descriptor: %v", err)
	}
	if _, err := s.OpenFastboot(ctx, "99-9.1"); err == nil || !strings.Contains(err.Error(), "99-9.1") {
		t.Errorf("missing fastboot device: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.SetPortPower(cctx, "99-9", 2, false); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := s.SetPortPower(ctx, "99-9", 2, false); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("after close: %v", err)
	}
	if err := s.Available(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Available after close: %v", err)
	}
}
