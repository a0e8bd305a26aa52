package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flashstation/flashstation/ledger"
)

func near(got *float64, want float64) bool {
	if got == nil {
		return false
	}
	d := *got - want
	return d < 1e-9 && d > -1e-9
}

func fig(f *float64) string {
	if f == nil {
		return "—"
	}
	return fmt.Sprint(*f)
}

// figureBench is a ledger on a clock the test moves.
type figureBench struct {
	l     *ledger.Ledger
	now   time.Time
	batch int64
}

func newFigureBench(t *testing.T, be backend) *figureBench {
	t.Helper()
	b := &figureBench{now: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}
	l := be.open(t, ledger.WithClock(func() time.Time { return b.now }))
	b.l = l
	b.batch = seed(t, l)
	return b
}

// unit records a unit of board hw in slot that starts now and ends after
// took with an outcome.
func (b *figureBench) unit(t *testing.T, slot, hw, state, reason string, took time.Duration) {
	t.Helper()
	ctx := context.Background()
	id, err := b.l.StartUnit(ctx, ledger.Unit{BatchID: b.batch, LineID: "line1", SlotID: slot, HWSerial: hw})
	if err != nil {
		t.Fatal(err)
	}
	b.now = b.now.Add(took)
	if state == ledger.UnitRunning {
		return
	}
	if err := b.l.FinishUnit(ctx, id, state, reason, ""); err != nil {
		t.Fatal(err)
	}
}

// TestSupervisorFigures: each figure as the README defines it, with
// retries, aborts, station errors and running units mixed in.
func TestSupervisorFigures(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		const (
			pass, fail, errored, aborted, running = ledger.UnitPass, ledger.UnitFail, ledger.UnitError, ledger.UnitAborted, ledger.UnitRunning
		)
		type u struct {
			slot, hw, state, reason string
			took                    time.Duration
			gap                     time.Duration // idle before the unit
		}
		none := -1.0 // no data: the figure is nil
		cases := []struct {
			name                  string
			units                 []u
			yield, fpy, perHour   float64
			errors, abort, pareto int
			errorReasons          int
			suspects              []string
		}{
			{name: "no units: no figures", yield: none, fpy: none, perHour: none},
			{name: "only running: no figures", units: []u{{"s1", "HW1", running, "", time.Minute, 0}}, yield: none, fpy: none, perHour: none},
			{name: "a retried board passes: yield counts it once, first pass does not",
				units: []u{{"s1", "HW1", fail, "write-error", 30 * time.Minute, 0}, {"s1", "HW1", pass, "", 30 * time.Minute, 0},
					{"s2", "HW2", pass, "", 0, 0}},
				yield: 1, fpy: 0.5, perHour: 2, pareto: 1},
			{name: "aborts and station errors are not the board's",
				units: []u{{"s1", "HW1", aborted, "interrupted", 15 * time.Minute, 0}, {"s1", "HW1", pass, "", 15 * time.Minute, 0},
					{"s2", "HW2", errored, "storage-error", 15 * time.Minute, 0}, {"s2", "HW2", fail, "kernel-panic", 15 * time.Minute, 0},
					{"s3", "HW3", errored, "trigger-failed", 0, 0}},
				yield: 0.5, fpy: 0.5, perHour: 1, errors: 2, abort: 1, pareto: 1, errorReasons: 2},
			{name: "failures without a pass: 0 per hour and 0% are data",
				units: []u{{"s1", "HW1", fail, "kernel-panic", 30 * time.Minute, 0}, {"s1", "HW2", fail, "kernel-panic", 30 * time.Minute, 0}},
				yield: 0, fpy: 0, perHour: 0, pareto: 1},
			{name: "idle time is not active time",
				units: []u{{"s1", "HW1", pass, "", 30 * time.Minute, 0}, {"s1", "HW2", pass, "", 30 * time.Minute, 5 * time.Hour}},
				yield: 1, fpy: 1, perHour: 2},
			{name: "only aborted: nothing finished",
				units: []u{{"s1", "HW1", aborted, "interrupted", time.Hour, 0}},
				yield: none, fpy: none, perHour: 0, abort: 1},
			{name: "a slot where three boards failed is a suspect; a board retried three times is not",
				units: append(append([]u{
					{"s1", "HW1", fail, "write-error", time.Minute, 0}, {"s1", "HW2", fail, "write-error", time.Minute, 0},
					{"s1", "HW3", fail, "write-error", time.Minute, 0},
					{"s2", "HW4", fail, "kernel-panic", time.Minute, 0}, {"s2", "HW4", fail, "kernel-panic", time.Minute, 0},
					{"s2", "HW4", fail, "kernel-panic", time.Minute, 0}},
					repeat(u{"s3", "", pass, "", time.Minute, 0}, 12)...), repeat(u{"s4", "", pass, "", time.Minute, 0}, 12)...),
				yield: 24.0 / 28, fpy: 24.0 / 28, perHour: 24 / (30.0 / 60), pareto: 2, suspects: []string{"s1"}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				b := newFigureBench(t, be)
				for i, x := range c.units {
					b.now = b.now.Add(x.gap)
					hw := x.hw
					if hw == "" {
						hw = fmt.Sprintf("P%03d", i)
					}
					b.unit(t, x.slot, hw, x.state, x.reason, x.took)
				}
				s, err := b.l.Stats(context.Background(), ledger.StatsFilter{BatchID: b.batch})
				if err != nil {
					t.Fatal(err)
				}
				check := func(name string, got *float64, want float64) {
					t.Helper()
					if want == none {
						if got != nil {
							t.Errorf("%s = %v, want no figure", name, *got)
						}
					} else if !near(got, want) {
						t.Errorf("%s = %s, want %v", name, fig(got), want)
					}
				}
				check("yield", s.Yield, c.yield)
				check("first-pass yield", s.FirstPassYield, c.fpy)
				check("units/hour", s.UnitsPerHour, c.perHour)
				if s.Yield != nil && s.FirstPassYield != nil && *s.Yield < *s.FirstPassYield {
					t.Errorf("yield %v below first-pass yield %v", *s.Yield, *s.FirstPassYield)
				}
				if s.Errors != c.errors || s.Aborted != c.abort || len(s.Pareto) != c.pareto || len(s.ErrorReasons) != c.errorReasons {
					t.Errorf("errors %d aborted %d pareto %v error reasons %v", s.Errors, s.Aborted, s.Pareto, s.ErrorReasons)
				}
				for _, r := range s.Pareto {
					if r.Reason == "storage-error" || r.Reason == "trigger-failed" || r.Reason == "interrupted" {
						t.Errorf("pareto holds %s", r.Reason)
					}
				}
				var suspects []string
				for _, sl := range s.Slots {
					if sl.Suspect {
						suspects = append(suspects, sl.Slot)
					}
				}
				if fmt.Sprint(suspects) != fmt.Sprint(c.suspects) {
					t.Errorf("suspects %v, want %v (%+v)", suspects, c.suspects, s.Slots)
				}
			})
		}
	})
}

func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// TestStatsTimeWindow: --since and --until select units by their start.
func TestStatsTimeWindow(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		b := newFigureBench(t, be)
		start := b.now
		b.unit(t, "s1", "HW1", ledger.UnitPass, "", time.Hour)
		b.unit(t, "s1", "HW2", ledger.UnitFail, "kernel-panic", time.Hour)
		b.unit(t, "s1", "HW3", ledger.UnitPass, "", time.Hour)
		for _, c := range []struct {
			since, until  time.Duration
			units, passed int
		}{
			{0, 0, 3, 2},
			{30 * time.Minute, 0, 2, 1},
			{0, 90 * time.Minute, 2, 1},
			{90 * time.Minute, 150 * time.Minute, 1, 1},
			{5 * time.Hour, 0, 0, 0},
		} {
			f := ledger.StatsFilter{BatchID: b.batch}
			if c.since > 0 {
				f.Since = start.Add(c.since)
			}
			if c.until > 0 {
				f.Until = start.Add(c.until)
			}
			s, err := b.l.Stats(context.Background(), f)
			if err != nil || s.Units != c.units || s.Passed != c.passed {
				t.Errorf("since %s until %s: units %d passed %d, want %d %d (%v)", c.since, c.until, s.Units, s.Passed, c.units, c.passed, err)
			}
		}
	})
}

// TestInterruptedUnitEndsAtItsLastEvent: a unit a killed station left
// running ends at its last recorded event, not at the restart, so the
// hours the station was down are not active time.
func TestInterruptedUnitEndsAtItsLastEvent(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		b := newFigureBench(t, be)
		ctx := context.Background()
		id, err := b.l.StartUnit(ctx, ledger.Unit{BatchID: b.batch, LineID: "line1", SlotID: "s1", HWSerial: "HW1"})
		if err != nil {
			t.Fatal(err)
		}
		start := b.now
		b.now = b.now.Add(3 * time.Minute)
		if err := b.l.AppendEvents(ctx, ledger.Event{BatchID: b.batch, UnitID: id, SlotID: "s1", Kind: "stage", Stage: "seeding"}); err != nil {
			t.Fatal(err)
		}
		b.now = b.now.Add(14 * time.Hour) // killed; restarted the next morning
		if _, err := b.l.InterruptRunning(ctx, "bench-01", "interrupted", "killed"); err != nil {
			t.Fatal(err)
		}
		u, err := b.l.Unit(ctx, id)
		if err != nil || u.State != ledger.UnitAborted || !u.FinishedAt.Equal(start.Add(3*time.Minute)) {
			t.Fatalf("unit %+v %v, want aborted at %s", u, err, start.Add(3*time.Minute))
		}
		s, err := b.l.Stats(ctx, ledger.StatsFilter{BatchID: b.batch})
		if err != nil || s.ActiveTime != 3*time.Minute {
			t.Errorf("active time %s %v, want 3m", s.ActiveTime, err)
		}
	})
}
