package lines

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flashstation/flashstation/usb"
)

// powerOffTime is how long a slot's ports stay off once the board has
// left the bus: long enough for its capacitors to drain.
const powerOffTime = time.Second

// Default bounds of a hub power cycle's confirmations (Options).
const (
	defaultPowerOffWait = 5 * time.Second
	defaultPowerOnWait  = 15 * time.Second
)

// powerCycle is the hub-power boot trigger: the slot's hub port (both
// halves of a USB 3 hub's) off, until the board has left the bus, then on
// again, until the board shows again on the slot's port or speaks on its
// console. Whatever happens the ports end powered; a failure names what
// was seen.
func (u *unitRun) powerCycle(ctx context.Context) bool {
	s, p := u.s, u.s.p
	hw := p.o.Hardware
	// Both halves of a USB 3 hub's port, when the hardware knows the
	// port's twin: else the board keeps its power.
	peers, _ := hw.(usb.PeerFinder)
	ports := usb.PortsOf(peers, s.cfg.Power.Hub, s.cfg.Power.Port)
	where := "power off on " + portsText(ports)
	start := time.Now()
	off, err := usb.SwitchOff(ctx, hw, ports)
	if err != nil {
		if onErr := usb.SwitchOn(ctx, hw, off); onErr != nil {
			err = fmt.Errorf("%w; %w", err, onErr)
		}
		u.fail(ReasonTriggerFailed, err.Error())
		return false
	}
	seen := map[string]any{"ports": portsText(ports)}
	// Off: the board's device leaves the bus.
	gone, why := u.awaitPresence(ctx, p.o.PowerOffWait, func(devs []usb.Device) bool {
		return !slices.ContainsFunc(devs, func(d usb.Device) bool { return stillThere(u.dev, d) })
	}, time.Time{})
	if !gone {
		onErr := usb.SwitchOn(ctx, hw, ports)
		switch {
		case ctx.Err() != nil:
			return u.cycleStopped(onErr)
		case why != "":
			why = ": " + why
		}
		detail := fmt.Sprintf("%s: the board stayed on the bus at %s for %s%s: the hub does not cut power to the port (ganged or bypassed)",
			where, u.dev.PortPath, p.o.PowerOffWait, why)
		if onErr != nil {
			detail += "; " + onErr.Error()
		}
		seen["stayed_on_bus"], seen["device"] = true, u.dev
		u.record("power", "trigger", detail, seen)
		u.fail(ReasonTriggerFailed, detail)
		return false
	}
	seen["gone_after_seconds"] = time.Since(start).Seconds()
	t := time.NewTimer(powerOffTime)
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	t.Stop()
	onErr := usb.SwitchOn(ctx, hw, ports)
	if ctx.Err() != nil {
		return u.cycleStopped(onErr)
	}
	if onErr != nil {
		u.fail(ReasonTriggerFailed, "power on: "+onErr.Error())
		return false
	}
	// On: the board shows again on the slot's port, or its console speaks.
	on := time.Now()
	seen["off_seconds"] = on.Sub(start).Seconds()
	u.bootFrom = on
	var back *usb.Device
	ok, why := u.awaitPresence(ctx, p.o.PowerOnWait, func(devs []usb.Device) bool {
		for i := range devs {
			if d := devs[i]; d.PortPath == u.dev.PortPath || slices.Contains(s.cfg.USBPorts, d.PortPath) {
				back = &d
				return true
			}
		}
		return false
	}, on)
	switch {
	case ok && back == nil:
		seen["back_by"] = "console"
	case ok && back.Serial != u.dev.Serial && inFlashMode(back) && back.Serial != "":
		// Another board in its flash mode: this one was taken out.
		detail := fmt.Sprintf("power on: board %s was taken out of the slot during its power cycle (board %s shows at %s now); it was not booted",
			u.dev.Serial, back.Serial, back.PortPath)
		seen["device"] = back
		u.record("power", "trigger", detail, seen)
		u.fail(ReasonCancelled, detail)
		return false
	case ok:
		seen["back_by"], seen["device"] = "device", back
	case ctx.Err() != nil:
		u.fail(ReasonInterrupted, "stopped while waiting for the board to come back after its power cycle (the ports are on)")
		return false
	default:
		if why != "" {
			why = " (" + why + ")"
		}
		detail := fmt.Sprintf("power on: no device at %s and no console output within %s%s; if the board was taken out of the slot, put it back and retry",
			u.dev.PortPath, p.o.PowerOnWait, why)
		seen["back"] = false
		u.record("power", "trigger", detail, seen)
		u.fail(ReasonTriggerFailed, detail)
		return false
	}
	seen["back_after_seconds"] = time.Since(on).Seconds()
	msg := fmt.Sprintf("power cycle on %s: the board left the bus after %.1fs; back after %.1fs", portsText(ports), seen["gone_after_seconds"], seen["back_after_seconds"])
	if back != nil {
		msg += fmt.Sprintf(" as %s at %s", back.Kind, back.PortPath)
	} else {
		msg += " on its console"
	}
	u.record("power", "trigger", msg, seen)
	return true
}

// cycleStopped ends a unit whose power cycle the station's stop (or the
// batch's end) cut short; the ports were powered on again.
func (u *unitRun) cycleStopped(onErr error) bool {
	detail := "stopped during the hub power cycle; the ports were powered on again"
	if onErr != nil {
		detail = "stopped during the hub power cycle; powering the ports on again failed: " + onErr.Error()
	}
	u.fail(ReasonInterrupted, detail)
	return false
}

// awaitPresence polls the hardware's devices every PollEvery until seen
// holds, for at most wait, or ctx ends. With a non-zero spoke it also
// ends, true, when the console receives bytes from that time on (they stay
// for the boot watcher). why is the last discovery error, if any.
func (u *unitRun) awaitPresence(ctx context.Context, wait time.Duration, seen func([]usb.Device) bool, spoke time.Time) (ok bool, why string) {
	p := u.s.p
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(p.o.PollEvery)
	defer tick.Stop()
	var spoken chan error // nil: not watched
	if !spoke.IsZero() {
		cctx, cancel := context.WithCancel(ctx)
		spoken = make(chan error, 1)
		go func() { spoken <- u.con.AwaitOutput(cctx, spoke) }()
		defer func() {
			cancel()
			if spoken != nil {
				<-spoken
			}
		}()
	}
	for {
		devs, err := p.o.Hardware.Devices()
		if err != nil {
			why = "cannot read the USB devices: " + err.Error()
		} else if seen(devs) {
			return true, ""
		}
		select {
		case <-tick.C:
		case err := <-spoken:
			spoken = nil // read: the deferred wait is over
			if err == nil {
				return true, ""
			}
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return false, why
			}
			// The console is gone for good: the bus alone tells.
		case <-deadline.C:
			return false, why
		case <-ctx.Done():
			return false, why
		}
	}
}

// stillThere reports whether d is the device dev, not yet re-enumerated:
// same port, serial and address.
func stillThere(dev, d usb.Device) bool {
	return d.PortPath == dev.PortPath && d.Serial == dev.Serial && d.Bus == dev.Bus && d.Address == dev.Address
}

// portsText names hub ports: "1-1 port 1 (and 2-1 port 1)".
func portsText(ports []usb.Port) string {
	if len(ports) == 0 {
		return ""
	}
	out := ports[0].String()
	if len(ports) > 1 {
		var rest []string
		for _, pt := range ports[1:] {
			rest = append(rest, pt.String())
		}
		out += " (and " + strings.Join(rest, ", ") + ")"
	}
	return out
}
