package lines

import (
	"context"
	"fmt"

	"github.com/flashstation/flashstation/usb"
)

// CheckHubPower checks, for every slot whose line boots its boards by
// hub power, that each half of its hub port (usb.PortsOf) is on a hub that
// switches power port by port and has that port: a ganged hub would power-
// cycle every board on it at once, a hub without switching none. r reads
// hub descriptors; peers finds a port's twin (nil: none). Each problem
// names the slot, the hub and what to do.
func CheckHubPower(ctx context.Context, st *Station, r usb.HubReader, peers usb.PeerFinder) []error {
	var out []error
	for _, s := range st.Slots {
		l, ok := st.LineByID(s.Line)
		if !ok || l.Boot.Trigger != TriggerHubPower || s.Power == nil || s.Disabled {
			continue
		}
		for _, pt := range usb.PortsOf(peers, s.Power.Hub, s.Power.Port) {
			d, err := r.HubDescriptor(ctx, pt.Hub)
			switch {
			case err != nil:
				out = append(out, fmt.Errorf("slot %s: hub %s: its power switching cannot be read: %w", s.ID, pt.Hub, err))
			case d.Switching() != usb.PowerPerPort:
				out = append(out, fmt.Errorf("slot %s: hub %s switches power %s, not port by port: a hub-power trigger cannot power-cycle one board on it; use a hub that switches power per port (flashstation devices shows it)",
					s.ID, pt.Hub, d.Switching()))
			case pt.Port > d.Ports:
				out = append(out, fmt.Errorf("slot %s: hub %s has %d ports, the slot's power port is %d", s.ID, pt.Hub, d.Ports, pt.Port))
			}
		}
	}
	return out
}
