package lines_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/sim"
	"github.com/flashstation/flashstation/usb/usbtest"
)

// powerBench is a bench whose slot A1 (line 1, hub-power trigger, hub
// 1-1 port 1) holds a board with faults; B1 is out of service. switched
// receives each switch of a hub port.
type powerBench struct {
	*e2e
	w        *watcher
	switched chan usbtest.PowerEvent
	stop     func()
}

func newPowerBench(t *testing.T, f sim.Faults, o benchOpt) *powerBench {
	t.Helper()
	e := startBenchWith(t, sim.BenchConfig{Boards: 2, Speed: 100, ImageSize: sim.MinImageSize,
		FaultsOf: func(i int) sim.Faults {
			if i == 0 {
				return f
			}
			return sim.Faults{}
		}}, 0, o)
	if err := e.p.SetDisabled("B1", true); err != nil {
		t.Fatal(err)
	}
	b := &powerBench{e2e: e, w: watch(e.p), switched: make(chan usbtest.PowerEvent, 16)}
	e.bench.Hubs.OnSwitch = func(ev usbtest.PowerEvent) {
		select {
		case b.switched <- ev:
		default: // nobody waits for it
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.p.Run(ctx); close(done) }()
	b.stop = func() { cancel(); <-done }
	t.Cleanup(b.stop)
	return b
}

// unit returns A1's unit (its only one) and its power records.
func (b *powerBench) unit(t *testing.T) (ledger.Unit, []ledger.Event) {
	t.Helper()
	ctx := context.Background()
	units, err := b.led.Units(ctx, ledger.UnitFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		if u.SlotID != "A1" {
			continue
		}
		evs, err := b.led.Events(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		var power []ledger.Event
		for _, ev := range evs {
			if ev.Kind == "power" {
				power = append(power, ev)
			}
		}
		return u, power
	}
	t.Fatal("no unit in A1")
	return ledger.Unit{}, nil
}

// TestHubPowerConfirmed: the hub-power trigger confirms the board lost
// power (it left the bus) and came back (it shows again or speaks); a
// hub that does not cut power, and a board that does not come back, fail
// the unit trigger-failed with what was seen, the port powered on again.
func TestHubPowerConfirmed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults sim.Faults
		state  string // the verdict
		detail string // in the unit's detail and its power record
		record string // in the power record of a pass
	}{
		{name: "per-port switching", state: lines.StatePass, record: "power cycle on 1-1 port 1: the board left the bus after"},
		{name: "the hub keeps the power on", faults: sim.Faults{KeepsPower: true}, state: lines.StateFail,
			detail: "power off on 1-1 port 1: the board stayed on the bus at 1-1.1 for 300ms: the hub does not cut power to the port (ganged or bypassed)"},
		{name: "the board does not come back", faults: sim.Faults{StaysOff: true}, state: lines.StateFail,
			detail: "power on: no device at 1-1.1 and no console output within 400ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newPowerBench(t, tc.faults, benchOpt{powerOffWait: 300 * time.Millisecond, powerOnWait: 400 * time.Millisecond})
			v, _ := b.w.await(t, 0, "A1's verdict", verdictOf("A1"))
			if v.State != tc.state || !strings.Contains(v.Detail, tc.detail) {
				t.Fatalf("verdict %s %s %q, want %s %q", v.State, v.Reason, v.Detail, tc.state, tc.detail)
			}
			b.stop()
			if !b.bench.Hubs.Powered("1-1", 1) {
				t.Error("the slot's port was left off")
			}
			u, power := b.unit(t)
			if len(power) != 1 {
				t.Fatalf("power records %+v", power)
			}
			if tc.state == lines.StatePass {
				if !strings.Contains(power[0].Message, tc.record) || !strings.Contains(power[0].Message, "back after") {
					t.Errorf("power record %q", power[0].Message)
				}
				// The boot watcher saw the boot from its first bytes.
				for _, stage := range []string{"first-bytes", "bootloader"} {
					if !hasStage(b.w.events(), "A1", stage) {
						t.Errorf("stage %s not reached: the console's first bytes went missing", stage)
					}
				}
				return
			}
			if u.Reason != lines.ReasonTriggerFailed || u.State != ledger.UnitError || !strings.Contains(power[0].Message, tc.detail) {
				t.Errorf("unit %s %s %q; record %q", u.State, u.Reason, u.Detail, power[0].Message)
			}
			// A station fault: the board waits while the bench is fixed.
			if then := lines.ReasonFor(u.Reason).Then(u.Attempt); then != lines.ThenFix {
				t.Errorf("the operator is told to %s the board", then)
			}
		})
	}
}

func hasStage(evs []lines.Event, slot, stage string) bool {
	for _, ev := range evs {
		if ev.Kind == lines.EventStage && ev.Slot == slot && ev.Stage == stage && !ev.Skipped {
			return true
		}
	}
	return false
}

// TestHubPowerStop: a stop while the trigger waits for the board to leave
// the bus, or to come back, ends the wait at once (the bounds are far
// away), powers the port on again and ends the unit interrupted.
func TestHubPowerStop(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults sim.Faults
		after  bool // stop once the port is on again (else once it is off)
	}{
		{name: "waiting for the board to leave the bus", faults: sim.Faults{KeepsPower: true}},
		{name: "waiting for the board to come back", faults: sim.Faults{StaysOff: true}, after: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newPowerBench(t, tc.faults, benchOpt{powerOffWait: time.Hour, powerOnWait: time.Hour})
			ceiling := time.After(3 * time.Minute)
			for waiting := true; waiting; {
				select {
				case ev := <-b.switched:
					waiting = ev.On != tc.after
				case <-ceiling:
					t.Fatalf("the port was not switched %v", map[bool]string{true: "on", false: "off"}[tc.after])
				}
			}
			b.stop() // returns only once the unit ended
			if !b.bench.Hubs.Powered("1-1", 1) {
				t.Error("the slot's port was left off")
			}
			u, _ := b.unit(t)
			if u.State != ledger.UnitAborted || u.Reason != lines.ReasonInterrupted || !strings.Contains(u.Detail, "power cycle") {
				t.Errorf("unit %s %s %q", u.State, u.Reason, u.Detail)
			}
		})
	}
}
