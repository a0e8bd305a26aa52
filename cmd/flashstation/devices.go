package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/usb"
	"github.com/flashstation/flashstation/usb/libusb"
)

func newDevicesCommand(stdout, stderr io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "devices [--json]",
		Short: "List USB boards and serial ports with their port paths",
		Long: `List what is plugged into this machine's USB ports, by port path (the name a
slot's usb-ports and console use): VID:PID, serial string, product, and what it
is to the bench (fastboot, disk with its /dev name, serial adapter, hub,
Raspberry Pi boot ROM), then the hubs: whether each can switch its ports'
power (per-port, ganged or none, from its hub descriptor, read through
libusb: "unknown (no libusb)" in a build without it) and its peer hub (the
other half of a USB 3 hub, from sysfs), then the serial ports with their
stable names.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lib := libusb.New()
			defer lib.Close()
			devs, ports, err := listDevices(cmd.Context(), usbSystem(), lib)
			if err != nil {
				return err
			}
			if ports.err != nil {
				fmt.Fprintf(stderr, "flashstation: %v\n", ports.err)
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					USB    []usb.Device     `json:"usb"`
					Serial []usb.SerialPort `json:"serial"`
				}{nonNil(devs), nonNil(ports.list)})
			}
			printDevices(stdout, devs, ports.list)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document on stdout")
	return cmd
}

// serialPorts are the serial ports found, or why they could not be listed
// (the USB devices are still shown).
type serialPorts struct {
	list []usb.SerialPort
	err  error
}

// listDevices lists the USB devices of s, with each hub's power switching
// read through hubs, and the serial ports.
func listDevices(ctx context.Context, s usb.Sysfs, hubs usb.HubReader) ([]usb.Device, serialPorts, error) {
	devs, err := s.Devices()
	if err != nil {
		return nil, serialPorts{}, err
	}
	for i := range devs {
		if devs[i].Hub {
			devs[i].PowerSwitching = powerSwitching(ctx, hubs, devs[i].PortPath)
		}
	}
	var ports serialPorts
	ports.list, ports.err = s.SerialPorts()
	return devs, ports, nil
}

// powerSwitching says how a hub switches its ports' power: per-port,
// ganged, none, or unknown with why.
func powerSwitching(ctx context.Context, hubs usb.HubReader, hub string) string {
	if hubs == nil {
		return "unknown (no libusb)"
	}
	d, err := hubs.HubDescriptor(ctx, hub)
	switch {
	case errors.Is(err, libusb.ErrUnavailable):
		return "unknown (no libusb)"
	case err != nil:
		return "unknown (" + strings.TrimPrefix(err.Error(), "hub "+hub+" descriptor: ") + ")"
	}
	return d.Switching().String()
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func printDevices(w io.Writer, devs []usb.Device, ports []usb.SerialPort) {
	if len(devs) == 0 {
		fmt.Fprintln(w, "no USB devices")
	} else {
		fmt.Fprintf(w, "%-12s %-9s %-9s %-20s %s\n", "PORT", "ID", "KIND", "SERIAL", "PRODUCT / PROVIDES")
		for _, d := range devs {
			provides := append(append([]string{}, d.Disks...), d.TTYs...)
			extra := d.Product
			if len(provides) > 0 {
				extra += " -> " + strings.Join(provides, ", ")
			}
			fmt.Fprintf(w, "%-12s %-9s %-9s %-20s %s\n", d.PortPath, d.VID+":"+d.PID, d.Kind, d.Serial, extra)
		}
		printHubs(w, devs)
	}
	fmt.Fprintln(w)
	if len(ports) == 0 {
		fmt.Fprintln(w, "no serial ports")
		return
	}
	fmt.Fprintf(w, "%-14s %-12s %s\n", "SERIAL PORT", "USB PORT", "STABLE NAME")
	for _, p := range ports {
		name := p.ByPath
		if name == "" {
			name = p.ByID
		}
		fmt.Fprintf(w, "%-14s %-12s %s\n", p.Device, p.PortPath, name)
	}
}

// printHubs lists the hubs with their power switching and peer hub.
func printHubs(w io.Writer, devs []usb.Device) {
	header := false
	for _, d := range devs {
		if !d.Hub {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintf(w, "%-12s %-5s %-20s %s\n", "HUB", "PORTS", "POWER SWITCHING", "PEER HUB")
			header = true
		}
		peer := d.PeerHub
		if peer == "" {
			peer = "-"
		}
		fmt.Fprintf(w, "%-12s %-5d %-20s %s\n", d.PortPath, d.HubPorts, d.PowerSwitching, peer)
	}
}
