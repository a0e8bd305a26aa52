package libusb

import (
	"context"
	"fmt"
	"time"

	"github.com/flashstation/flashstation/flash"
)

// Backend is the libusb the adapter drives: gousb in a cgo build, a
// playback of recorded calls in tests (libusbtest). No gousb type
// crosses it, so everything above it (fastboot framing, deadlines,
// cancellation, hub requests) is plain Go and tested without hardware.
type Backend interface {
	// Open opens the device at a bus and chain of hub ports (1-1.4 is bus
	// 1, ports [1 4]); an error wraps ErrNoDevice when nothing is there.
	Open(bus int, ports []int) (Device, error)
	Close() error
}

// Device is an opened USB device.
type Device interface {
	Desc() DeviceDesc
	// Control makes a control transfer on endpoint 0, bounded by timeout;
	// data is sent (host to device) or filled (device to host).
	Control(rType, request uint8, value, index uint16, data []byte, timeout time.Duration) (int, error)
	// Claim claims an interface of the active configuration (detaching a
	// kernel driver) and opens its bulk endpoints in and out.
	Claim(intf, alt, in, out int) (Pipe, error)
	Close() error
}

// Pipe is a claimed interface's pair of bulk endpoints. Read and Write
// return when ctx ends (the transfer cancelled, an error wrapping
// ErrCancelled) and may report a partial count with an error.
type Pipe interface {
	Write(ctx context.Context, p []byte) (int, error)
	Read(ctx context.Context, p []byte) (int, error)
	// Close releases the interface; its caller makes sure no transfer runs.
	Close() error
}

// DeviceDesc is what the adapter reads of a device's descriptors.
type DeviceDesc struct {
	Class           uint8
	USB             uint16 // bcdUSB: 0x0200, 0x0300...
	Vendor, Product uint16
	Interfaces      []InterfaceDesc // of the active configuration
}

// InterfaceDesc is one alternate setting of an interface.
type InterfaceDesc struct {
	Number, Alternate         int
	Class, SubClass, Protocol uint8
	Endpoints                 []EndpointDesc
}

// EndpointDesc is one endpoint of an interface.
type EndpointDesc struct {
	Number    int // without the direction bit
	In        bool
	Bulk      bool
	MaxPacket int
}

// Errors a Backend wraps.
var (
	// ErrNoDevice: the device is not there, or left the bus (it wraps
	// flash.ErrDeviceGone, so a flash job ends "unplugged").
	ErrNoDevice = fmt.Errorf("usb: no device: %w", flash.ErrDeviceGone)
	// ErrCancelled: a transfer was cancelled (its ctx ended).
	ErrCancelled = fmt.Errorf("usb: transfer cancelled")
	// ErrTimeout: a control transfer took longer than its timeout.
	ErrTimeout = fmt.Errorf("usb: transfer timed out")
	// ErrStall: the device stalled the endpoint (refused the request).
	ErrStall = fmt.Errorf("usb: endpoint stalled")
)

// USB classes and the fastboot interface (AOSP: ff/42/03).
const (
	ClassHub          = 0x09
	ClassVendor       = 0xff
	fastbootSubClass  = 0x42
	fastbootProtocol  = 0x03
	fastbootRespBytes = 64 // a response packet (AOSP FB_RESPONSE_SZ)
)
