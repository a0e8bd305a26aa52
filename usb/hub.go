package usb

import (
	"context"
	"fmt"
)

// HubDescriptor is what a hub's class descriptor (USB 2.0 11.23.2.1,
// USB 3.2 10.15.2.1) says about its ports. sysfs does not expose it: it
// is read with a GET_DESCRIPTOR control request (the usb/libusb adapter).
type HubDescriptor struct {
	Ports int
	// Characteristics is wHubCharacteristics.
	Characteristics uint16
}

// PowerSwitching is how a hub switches its ports' power: wHubCharacteristics
// bits 1:0.
type PowerSwitching int

// Power switching modes.
const (
	PowerGanged  PowerSwitching = iota // 00: all ports at once
	PowerPerPort                       // 01: each port on its own
	PowerNone                          // 1x: no power switching (USB 1.0 hubs)
)

// Switching returns the hub's power switching mode.
func (d HubDescriptor) Switching() PowerSwitching {
	switch d.Characteristics & 0x3 {
	case 0:
		return PowerGanged
	case 1:
		return PowerPerPort
	}
	return PowerNone
}

func (p PowerSwitching) String() string {
	switch p {
	case PowerGanged:
		return "ganged"
	case PowerPerPort:
		return "per-port"
	}
	return "none"
}

// Hub descriptor types: USB 2.0 hubs answer 0x29, SuperSpeed hubs 0x2A.
const (
	DescTypeHub   = 0x29
	DescTypeSSHub = 0x2A
)

// ParseHubDescriptor decodes a hub class descriptor (either type): its
// bLength, bDescriptorType, bNbrPorts and wHubCharacteristics.
func ParseHubDescriptor(b []byte) (HubDescriptor, error) {
	if len(b) < 5 {
		return HubDescriptor{}, fmt.Errorf("hub descriptor: %d bytes, want at least 5", len(b))
	}
	if b[1] != DescTypeHub && b[1] != DescTypeSSHub {
		return HubDescriptor{}, fmt.Errorf("hub descriptor: type %#02x is not a hub descriptor", b[1])
	}
	if int(b[0]) < 5 || int(b[0]) > len(b) {
		return HubDescriptor{}, fmt.Errorf("hub descriptor: bLength %d of %d bytes read", b[0], len(b))
	}
	return HubDescriptor{Ports: int(b[2]), Characteristics: uint16(b[3]) | uint16(b[4])<<8}, nil
}

// HubReader reads a hub's descriptor by the hub's port path; the usb/libusb
// adapter is one.
type HubReader interface {
	HubDescriptor(ctx context.Context, hub string) (HubDescriptor, error)
}
