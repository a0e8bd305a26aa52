package metrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/metrics"
)

var t0 = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func state(slot, line string, unit int64, st string, sec float64) lines.Event {
	return lines.Event{Kind: lines.EventState, Slot: slot, Line: line, Unit: unit, State: st, At: at(sec)}
}

func verdict(slot, line string, unit int64, outcome, reason string) lines.Event {
	st := lines.StateFail
	if outcome == "pass" {
		st = lines.StatePass
	}
	return lines.Event{Kind: lines.EventVerdict, Slot: slot, Line: line, Unit: unit, State: st, Outcome: outcome, Reason: reason,
		HWSerial: "HW" + slot, Serial: "SN" + slot}
}

func flashed(line string, written int64, write, verify time.Duration) lines.Event {
	return lines.Event{Kind: lines.EventFlash, Slot: "A1", Line: line, Unit: 1,
		Flash: &lines.FlashFigures{Mapped: written, Written: written, Write: write, Verify: verify, Verified: verify > 0}}
}

// TestObserve feeds events and checks what they count.
func TestObserve(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []lines.Event
		want   []want
		absent []string // name{labels} that must have no sample
	}{
		{
			name: "verdicts by line, verdict and reason",
			events: []lines.Event{
				verdict("A1", "l1", 1, "pass", ""), verdict("A2", "l1", 2, "pass", ""),
				verdict("A3", "l1", 3, lines.ClassFail, "write-error"),
				verdict("B1", "l2", 4, lines.ClassError, lines.ReasonVaultRefused),
				verdict("B2", "l2", 5, lines.ClassAborted, lines.ReasonInterrupted),
				verdict("B3", "l2", 6, lines.ClassFail, "write-error"),
			},
			want: []want{
				{metrics.NameUnits, "line=l1,reason=,verdict=pass", 2},
				{metrics.NameUnits, "line=l1,reason=write-error,verdict=fail", 1},
				{metrics.NameUnits, "line=l2,reason=vault-refused,verdict=error", 1},
				{metrics.NameUnits, "line=l2,reason=interrupted,verdict=aborted", 1},
				{metrics.NameUnits, "line=l2,reason=write-error,verdict=fail", 1},
			},
			absent: []string{metrics.NameUnits + "{line=l2,reason=,verdict=pass}"},
		},
		{
			name:   "a reason that is no reason code is other",
			events: []lines.Event{verdict("A1", "l1", 1, lines.ClassFail, "Kernel panic: SN 123 at 0xdeadbeef")},
			want: []want{
				{metrics.NameUnits, "line=l1,reason=other,verdict=fail", 1},
				{metrics.NameDroppedReasons, "", 1},
			},
		},
		{
			name: "flash bytes, seconds and throughput",
			events: []lines.Event{
				flashed("l1", 100e6, 4*time.Second, 2*time.Second),
				flashed("l1", 50e6, time.Second, 0),
				flashed("l2", 3<<20, 0, 0), // no write time: no throughput
			},
			want: []want{
				{metrics.NameFlashWritten, "line=l1", 150e6},
				{metrics.NameFlashWrite, "line=l1", 5},
				{metrics.NameFlashVerify, "line=l1", 2},
				{metrics.NameFlashThroughput + "_count", "line=l1", 2},
				{metrics.NameFlashThroughput + "_sum", "line=l1", 25e6 + 50e6},
				{metrics.NameFlashWritten, "line=l2", 3 << 20},
			},
			absent: []string{metrics.NameFlashThroughput + "_count{line=l2}"},
		},
		{
			name: "registration: register to pass",
			events: []lines.Event{
				state("A1", "l1", 1, lines.StateBooting, 0), state("A1", "l1", 1, lines.StateRegister, 10),
				state("A1", "l1", 1, lines.StatePass, 13.5), verdict("A1", "l1", 1, "pass", ""),
			},
			want: []want{
				{metrics.NameRegistration + "_count", "line=l1", 1}, {metrics.NameRegistration + "_sum", "line=l1", 3.5},
				{metrics.NameBootToSerial + "_count", "line=l1", 1}, {metrics.NameBootToSerial + "_sum", "line=l1", 13.5},
			},
		},
		{
			name: "registration: an identity check starts once the serial is recorded",
			events: []lines.Event{
				state("A1", "l1", 1, lines.StateRegister, 10),
				{Kind: lines.EventStage, Slot: "A1", Line: "l1", Unit: 1, Stage: lines.StageIdentity, At: at(12)},
				state("A1", "l1", 1, lines.StatePass, 70),
			},
			want:   []want{{metrics.NameRegistration + "_count", "line=l1", 1}, {metrics.NameRegistration + "_sum", "line=l1", 2}},
			absent: []string{metrics.NameBootToSerial + "_count{line=l1}"},
		},
		{
			name: "registration: a failed one is not timed; a retry is timed from its own start",
			events: []lines.Event{
				state("A1", "l1", 1, lines.StateBooting, 5),
				state("A1", "l1", 1, lines.StateRegister, 10), state("A1", "l1", 1, lines.StateFail, 600),
				verdict("A1", "l1", 1, lines.ClassFail, lines.ReasonRegistrationTimeout),
				state("A1", "l1", 0, lines.StateIdle, 700),
				state("A1", "l1", 2, lines.StateBooting, 790),
				state("A1", "l1", 2, lines.StateRegister, 800), state("A1", "l1", 2, lines.StatePass, 801),
				// Another slot's pass, for a unit that never registered.
				state("A2", "l1", 3, lines.StatePass, 900),
			},
			want: []want{
				{metrics.NameRegistration + "_count", "line=l1", 1}, {metrics.NameRegistration + "_sum", "line=l1", 1},
				{metrics.NameBootToSerial + "_count", "line=l1", 1}, {metrics.NameBootToSerial + "_sum", "line=l1", 11},
			},
		},
		{
			name: "registration: slots are timed apart",
			events: []lines.Event{
				state("A1", "l1", 1, lines.StateRegister, 10), state("B1", "l2", 2, lines.StateRegister, 11),
				state("B1", "l2", 2, lines.StatePass, 15), state("A1", "l1", 1, lines.StatePass, 30),
			},
			want: []want{
				{metrics.NameRegistration + "_count", "line=l1", 1}, {metrics.NameRegistration + "_sum", "line=l1", 20},
				{metrics.NameRegistration + "_count", "line=l2", 1}, {metrics.NameRegistration + "_sum", "line=l2", 4},
			},
		},
		{
			name: "progress and console lines count nothing",
			events: []lines.Event{
				{Kind: lines.EventProgress, Slot: "A1", Line: "l1", Progress: lines.Progress{Phase: "write", Done: 1 << 20, Total: 2 << 20}},
				{Kind: lines.EventLine, Slot: "A1", Line: "l1", Text: "U-Boot 2024.01"},
			},
			absent: []string{metrics.NameFlashWritten + "{line=l1}", metrics.NameUnits + "{line=l1,reason=,verdict=pass}"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New(metrics.Options{StationID: "bench-1"})
			for _, e := range tc.events {
				m.Observe(e)
			}
			fs := gather(t, m.Registry())
			fs.check(t, tc.want)
			for _, a := range tc.absent {
				name, lbls, _ := strings.Cut(strings.TrimSuffix(a, "}"), "{")
				if v, ok := fs.value(name, lbls); ok {
					t.Errorf("%s = %g, want no sample", a, v)
				}
			}
		})
	}
}

// TestKnownSeries: each line's pass and known reasons exist at zero from
// the start, so increase() sees a line's first unit; the station's id is
// an info metric; Go and process metrics are there.
func TestKnownSeries(t *testing.T) {
	m := metrics.New(metrics.Options{StationID: "bench-7", Lines: []string{"l1", "l2"}})
	fs := gather(t, m.Registry())
	fs.check(t, []want{
		{metrics.NameStationInfo, "station_id=bench-7", 1},
		{metrics.NameUnits, "line=l1,reason=,verdict=pass", 0},
		{metrics.NameUnits, "line=l2,reason=write-error,verdict=fail", 0},
		{metrics.NameUnits, "line=l2,reason=vault-refused,verdict=error", 0},
		{metrics.NameFlashWritten, "line=l1", 0},
		{metrics.NameRegistration + "_count", "line=l2", 0},
	})
	if got, want := fs.series(metrics.NameUnits), 2*(1+len(lines.Reasons)); got != want {
		t.Errorf("%d series of %s, want %d", got, metrics.NameUnits, want)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_start_time_seconds"} {
		if fs[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	if n := testutil.CollectAndCount(m.Registry(), metrics.NameOutboxBacklog); n != 0 {
		t.Errorf("%d outbox samples without an outbox", n)
	}
}

// TestReasonLabelsBounded: the reason label takes at most a few hundred
// values, whatever boot profiles report; the rest count as other.
func TestReasonLabelsBounded(t *testing.T) {
	m := metrics.New(metrics.Options{})
	const n = 1000
	for i := range n {
		m.Observe(verdict("A1", "l1", int64(i), lines.ClassFail, "profile-reason-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+itoa(i)))
	}
	fs := gather(t, m.Registry())
	series := fs.series(metrics.NameUnits)
	other, _ := fs.value(metrics.NameUnits, "line=l1,reason=other,verdict=fail")
	dropped, _ := fs.value(metrics.NameDroppedReasons, "")
	if series > 201 || series < 100 {
		t.Errorf("%d series of %s for %d distinct reasons", series, metrics.NameUnits, n)
	}
	if other != dropped || int(other)+series-1 != n {
		t.Errorf("other = %g, dropped = %g, %d series: want every unit counted once", other, dropped, series)
	}
}

func itoa(i int) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		if i /= 10; i == 0 {
			return string(b)
		}
	}
}
