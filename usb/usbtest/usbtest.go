// Package usbtest fakes the bench's USB: switchable hub ports that record
// what was done to them, and a device list that tests (and the simulated
// bench) change as boards come and go.
package usbtest

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/flashstation/flashstation/usb"
)

// PowerEvent is one switch of a hub port.
type PowerEvent struct {
	Hub  string
	Port int
	On   bool
}

// Hubs fakes switchable hub ports (a usb.PortPower) and their hub
// descriptors (a usb.HubReader). OnSwitch, when set, is called after each
// switch (a simulated board powers down or boots).
type Hubs struct {
	mu       sync.Mutex
	events   []PowerEvent
	state    map[string]bool
	Fail     error // returned by SetPortPower when set
	OnSwitch func(PowerEvent)
	// Descriptors are the hubs' descriptors by port path; a hub not in it
	// has 4 per-port switched ports.
	Descriptors map[string]usb.HubDescriptor
	// DescriptorFail is returned by HubDescriptor when set.
	DescriptorFail error
}

// HubDescriptor returns the hub's descriptor from Descriptors.
func (h *Hubs) HubDescriptor(_ context.Context, hub string) (usb.HubDescriptor, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.DescriptorFail != nil {
		return usb.HubDescriptor{}, h.DescriptorFail
	}
	if d, ok := h.Descriptors[hub]; ok {
		return d, nil
	}
	return usb.HubDescriptor{Ports: 4, Characteristics: 0x0001}, nil
}

// SetPortPower records the switch.
func (h *Hubs) SetPortPower(_ context.Context, hub string, port int, on bool) error {
	h.mu.Lock()
	if h.Fail != nil {
		h.mu.Unlock()
		return h.Fail
	}
	if h.state == nil {
		h.state = map[string]bool{}
	}
	ev := PowerEvent{hub, port, on}
	h.events = append(h.events, ev)
	h.state[fmt.Sprintf("%s:%d", hub, port)] = on
	cb := h.OnSwitch
	h.mu.Unlock()
	if cb != nil {
		cb(ev)
	}
	return nil
}

// Events returns the switches so far.
func (h *Hubs) Events() []PowerEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]PowerEvent(nil), h.events...)
}

// Powered reports a port's state (ports start powered).
func (h *Hubs) Powered(hub string, port int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	on, known := h.state[fmt.Sprintf("%s:%d", hub, port)]
	return !known || on
}

// Bus is a settable list of USB devices, the fake of usb.Sysfs.Devices.
type Bus struct {
	mu      sync.Mutex
	devices map[string]usb.Device
}

// Plug adds (or replaces) the device at its port path.
func (b *Bus) Plug(d usb.Device) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.devices == nil {
		b.devices = map[string]usb.Device{}
	}
	b.devices[d.PortPath] = d
}

// Unplug removes the device at a port path.
func (b *Bus) Unplug(portPath string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.devices, portPath)
}

// Devices lists the plugged devices by port path.
func (b *Bus) Devices() ([]usb.Device, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]usb.Device, 0, len(b.devices))
	for _, d := range b.devices {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PortPath < out[j].PortPath })
	return out, nil
}

// Twins is a usb.PeerFinder of USB 3 hubs: the ports of each key's hub
// and of its value's are peers, port for port (Twins{"1-1": "2-1"}: a
// hub whose USB 2 half is 1-1 and SuperSpeed half 2-1).
type Twins map[string]string

// PortPeer returns the port's twin on the other half.
func (t Twins) PortPeer(hub string, port int) (string, int, bool) {
	if h, ok := t[hub]; ok {
		return h, port, true
	}
	for k, v := range t {
		if v == hub {
			return k, port, true
		}
	}
	return "", 0, false
}
