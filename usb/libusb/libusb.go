// Package libusb is the bench's libusb adapter: it opens fastboot
// interfaces for bulk transfers (a flash.FastbootOpener), switches hub port
// power (a usb.PortPower) and reads hub descriptors (a usb.HubReader),
// through gousb. It is the only package that imports gousb; no gousb type
// leaves it.
//
// A Session opens its libusb context on first use, once per process, and
// its owner (the station's hardware, or a command) closes it. Built
// without cgo (CGO_ENABLED=0) the package still builds: every method
// returns an error wrapping ErrUnavailable, and the rest of flashstation
// (sysfs discovery, block devices, fastboot over TCP) works.
package libusb

import (
	"errors"
	"fmt"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/usb"
)

// A Session is what the domain packages need of USB, with or without cgo.
var (
	_ flash.FastbootOpener = (*Session)(nil)
	_ usb.PortPower        = (*Session)(nil)
	_ usb.HubReader        = (*Session)(nil)
)

// ErrUnavailable is wrapped by every error of a flashstation built
// without cgo, which has no libusb.
var ErrUnavailable = errors.New("USB fastboot and hub power need libusb: this flashstation was built without cgo")

// errClosed is returned after Close.
var errClosed = errors.New("libusb: session closed")

// Hub class requests (USB 2.0 11.24.2): SET_FEATURE and CLEAR_FEATURE of
// PORT_POWER on a downstream port, GET_DESCRIPTOR of the hub descriptor.
const (
	reqTypeClassOther  = 0x23 // host-to-device, class, other (a port)
	reqTypeClassDevIn  = 0xa0 // device-to-host, class, device
	reqClearFeature    = 0x01
	reqSetFeature      = 0x03
	reqGetDescriptor   = 0x06
	featPortPower      = 8
	hubDescriptorBytes = 71 // the longest USB 2.0 hub descriptor (255 ports)
)

// powerRequest returns the hub class request that switches a port.
func powerRequest(on bool) uint8 {
	if on {
		return reqSetFeature
	}
	return reqClearFeature
}

// portError names the port in an error of a hub request.
func portError(hub string, port int, on bool, err error) error {
	state := "off"
	if on {
		state = "on"
	}
	return fmt.Errorf("hub %s port %d power %s: %w", hub, port, state, err)
}
