package flash_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/flash"
)

// fakeOpener is a flash.FastbootOpener that records the port it was asked
// for and fails as told.
type fakeOpener struct {
	port string
	err  error
}

func (o *fakeOpener) OpenFastboot(_ context.Context, portPath string) (flash.FastbootTransport, error) {
	o.port = portPath
	return nil, o.err
}

// TestFastbootUSBTargetsOpenThroughTheOpener: a fastboot:usb target is
// opened by TargetOptions.USB with its port path; without one, or when the
// opener fails (a build without libusb), the job is refused with the
// reason in its detail.
func TestFastbootUSBTargetsOpenThroughTheOpener(t *testing.T) {
	ctx := context.Background()
	var f *flash.Failure
	if _, err := flash.OpenJob(ctx, "fastboot:usb:1-1.2", flash.TargetOptions{}); !errors.As(err, &f) || f.Reason != flash.ReasonOpen || !strings.Contains(f.Detail, "not available") {
		t.Errorf("no opener: %v", err)
	}
	unavailable := errors.New("USB fastboot and hub power need libusb: this flashstation was built without cgo")
	o := &fakeOpener{err: unavailable}
	_, err := flash.OpenJob(ctx, "fastboot:usb:1-1.2", flash.TargetOptions{USB: o})
	if o.port != "1-1.2" {
		t.Errorf("opener asked for %q", o.port)
	}
	if !errors.As(err, &f) || f.Reason != flash.ReasonOpen || !errors.Is(err, unavailable) || !strings.Contains(f.Detail, "built without cgo") {
		t.Errorf("failing opener: %v", err)
	}
}
