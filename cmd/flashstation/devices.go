package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/usb"
)

func newDevicesCommand(stdout, stderr io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "devices [--json]",
		Short: "List USB boards and serial ports with their port paths",
		Long: `List what is plugged into this machine's USB ports, by port path (the name a
slot's usb-ports and console use): VID:PID, serial string, product, and what it
is to the bench (fastboot, disk with its /dev name, serial adapter, hub,
Raspberry Pi boot ROM), then the serial ports with their stable names.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			devs, err := usb.System.Devices()
			if err != nil {
				return err
			}
			ports, err := usb.System.SerialPorts()
			if err != nil {
				fmt.Fprintf(stderr, "flashstation: %v\n", err)
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					USB    []usb.Device     `json:"usb"`
					Serial []usb.SerialPort `json:"serial"`
				}{nonNil(devs), nonNil(ports)})
			}
			printDevices(stdout, devs, ports)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document on stdout")
	return cmd
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
