//go:build !cgo

package libusb_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/usb/libusb"
)

// TestUnavailableWithoutCgo: built without cgo, every USB operation says
// why it cannot work, naming the port.
func TestUnavailableWithoutCgo(t *testing.T) {
	ctx := context.Background()
	s := libusb.New()
	defer s.Close()
	_, ferr := s.OpenFastboot(ctx, "1-1.2")
	_, herr := s.HubDescriptor(ctx, "1-1")
	for _, err := range []error{ferr, s.SetPortPower(ctx, "1-1", 2, false), herr} {
		if !errors.Is(err, libusb.ErrUnavailable) || !strings.Contains(err.Error(), "built without cgo") || !strings.Contains(err.Error(), "1-1") {
			t.Errorf("%v: want ErrUnavailable naming the port", err)
		}
	}
	if err := s.Available(); !errors.Is(err, libusb.ErrUnavailable) {
		t.Errorf("Available: %v", err)
	}
}
