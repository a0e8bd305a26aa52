//go:build cgo

package libusb

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/google/gousb"

	"github.com/flashstation/flashstation/flash"
)

// TestGousbErrors: libusb's errors and transfer states become the
// Backend's, so a pulled board ends "unplugged" and a cancelled transfer
// reads as one; others pass through.
func TestGousbErrors(t *testing.T) {
	other := errors.New("libusb: overflow")
	for _, tc := range []struct {
		in   error
		want error
	}{
		{gousb.ErrorNoDevice, ErrNoDevice},
		{gousb.TransferNoDevice, ErrNoDevice},
		{fmt.Errorf("write: %w", gousb.TransferNoDevice), flash.ErrDeviceGone},
		{gousb.TransferCancelled, ErrCancelled},
		{gousb.ErrorTimeout, ErrTimeout},
		{gousb.TransferTimedOut, ErrTimeout},
		{gousb.ErrorPipe, ErrStall},
		{gousb.TransferStall, ErrStall},
		{other, other},
	} {
		if got := gousbError(tc.in); !errors.Is(got, tc.want) {
			t.Errorf("%v: got %v, want it to wrap %v", tc.in, got, tc.want)
		}
	}
	if gousbError(nil) != nil {
		t.Error("nil error mapped to one")
	}
}

// TestDescOf: gousb's descriptors of the active configuration become
// ours, every alternate setting and endpoint with its direction, type and
// packet size; an unconfigured device offers no interfaces.
func TestDescOf(t *testing.T) {
	g := &gousb.DeviceDesc{Class: gousb.ClassPerInterface, Spec: gousb.Version(2, 0), Vendor: 0x18d1, Product: 0x4ee0,
		Configs: map[int]gousb.ConfigDesc{1: {Number: 1, Interfaces: []gousb.InterfaceDesc{{Number: 0, AltSettings: []gousb.InterfaceSetting{{
			Number: 0, Alternate: 0, Class: gousb.ClassVendorSpec, SubClass: 0x42, Protocol: 0x03,
			Endpoints: map[gousb.EndpointAddress]gousb.EndpointDesc{
				0x81: {Address: 0x81, Number: 1, Direction: gousb.EndpointDirectionIn, TransferType: gousb.TransferTypeBulk, MaxPacketSize: 512},
			}}}}}}}}
	want := DeviceDesc{Class: 0, USB: 0x0200, Vendor: 0x18d1, Product: 0x4ee0, Interfaces: []InterfaceDesc{{
		Number: 0, Alternate: 0, Class: 0xff, SubClass: 0x42, Protocol: 0x03,
		Endpoints: []EndpointDesc{{Number: 1, In: true, Bulk: true, MaxPacket: 512}}}}}
	if got := descOf(g, 1); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if got := descOf(g, -1); len(got.Interfaces) != 0 || got.Vendor != 0x18d1 {
		t.Errorf("unconfigured: %+v", got)
	}
}
