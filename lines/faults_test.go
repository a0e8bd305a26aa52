package lines_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	_ "modernc.org/sqlite"

	"github.com/flashstation/flashstation/internal/disktest"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/ledger/spool"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/sim"
)

// agreeWithVault checks that the vault double's signing log and the
// ledger hold the same serials: every row the vault signed is recorded
// with its device key and revision, on its line, and the ledger holds
// nothing the vault did not sign.
func agreeWithVault(t *testing.T, e *e2e) {
	t.Helper()
	ctx := context.Background()
	logs := e.bench.Vault.SigningLog()
	recs, err := e.led.SerialAssertions(ctx, ledger.AssertionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	units, err := e.led.Units(ctx, ledger.UnitFilter{})
	if err != nil {
		t.Fatal(err)
	}
	matched := 0
	for i := range e.st.Lines {
		r := lines.Reconcile(&e.st.Lines[i], e.st.ID, sim.BrandID, sim.ModelName, logs, recs, units, time.Time{})
		if !r.OK() || r.Pending != 0 {
			t.Errorf("line %s: %d differences, %d pending: %+v", r.Line, len(r.Differences), r.Pending, r.Differences)
		}
		matched += r.Matched
	}
	if len(logs) == 0 || matched != len(logs) || len(recs) != len(logs) {
		t.Errorf("the vault signed %d serials, the ledger holds %d, %d matched", len(logs), len(recs), matched)
	}
	if n, err := spool.Count(lines.SpoolDir(e.st)); n != 0 || err != nil {
		t.Errorf("%d serials left in the spool (%v)", n, err)
	}
}

// heldBench is a bench of one board per line (A1: recording proxy, B1:
// console capture), each held before it registers until release.
type heldBench struct {
	*e2e
	w       *watcher
	release func()
	stop    func()
}

func newHeldBench(t *testing.T, o benchOpt, disable ...string) *heldBench {
	t.Helper()
	gate := make(chan struct{})
	e := startBenchWith(t, sim.BenchConfig{Boards: 2, Speed: 100, ImageSize: sim.MinImageSize,
		FaultsOf: func(int) sim.Faults { return sim.Faults{HoldRegistration: gate} }}, 1, o)
	for _, slot := range disable {
		if err := e.p.SetDisabled(slot, true); err != nil {
			t.Fatal(err)
		}
	}
	h := &heldBench{e2e: e, w: watch(e.p)}
	released := false
	h.release = func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(h.release)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.p.Run(ctx); close(done) }()
	h.stop = func() { cancel(); <-done }
	t.Cleanup(h.stop)
	return h
}

// awaitRegistering waits until both boards wait to register.
func (h *heldBench) awaitRegistering(t *testing.T) {
	t.Helper()
	for _, slot := range []string{"A1", "B1"} {
		h.w.await(t, 0, slot+" registering", func(ev lines.Event) bool {
			return ev.Kind == lines.EventState && ev.Slot == slot && ev.State == lines.StateRegister
		})
	}
}

func (h *heldBench) awaitVerdicts(t *testing.T) {
	t.Helper()
	for _, slot := range []string{"A1", "B1"} {
		if v, _ := h.w.await(t, 0, slot+"'s verdict", verdictOf(slot)); v.State != lines.StatePass {
			t.Errorf("%s: %s %s %s", slot, v.State, v.Reason, v.Detail)
		}
	}
}

// lockLedger holds the ledger's write lock from another connection (as a
// backup tool or an sqlite3 shell would) until the returned func is
// called.
func lockLedger(t *testing.T, path string) func() {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			conn.ExecContext(context.Background(), "ROLLBACK")
			conn.Close()
			db.Close()
		}
	}
	t.Cleanup(unlock)
	return unlock
}

// TestLedgerLockedLosesNoSerial: the ledger refuses every write (another
// program holds its lock) while both boards register. Each signed serial
// is spooled, the operator is told, neither board fails; once the ledger
// takes writes again both pass, and the ledger equals the vault's signing
// log, with every event of the units kept.
func TestLedgerLockedLosesNoSerial(t *testing.T) {
	h := newHeldBench(t, benchOpt{ledger: []ledger.Option{ledger.WithBusyTimeout(50 * time.Millisecond)}, registerTimeout: 3 * time.Minute})
	h.awaitRegistering(t)
	unlock := lockLedger(t, h.led.Path())
	h.release()
	for _, slot := range []string{"A1", "B1"} {
		ev, _ := h.w.await(t, 0, slot+": the ledger cannot record", func(ev lines.Event) bool {
			return ev.Kind == lines.EventNotice && ev.Slot == slot && strings.Contains(ev.Text, "the ledger cannot record serial")
		})
		if !strings.Contains(ev.Text, "spool") || ev.Serial == "" && slot == "A1" {
			t.Errorf("%s notice %+v", slot, ev)
		}
	}
	// Both serials are signed and spooled; neither board has a verdict.
	if n, err := spool.Count(lines.SpoolDir(h.st)); n != 2 || err != nil {
		t.Errorf("spooled %d (%v), want both serials", n, err)
	}
	if got := len(h.bench.Vault.SigningLog()); got != 2 {
		t.Errorf("vault signed %d", got)
	}
	for _, v := range h.p.Slots() {
		if v.State != lines.StateRegister {
			t.Errorf("slot %s is %s while the ledger is locked", v.ID, v.State)
		}
	}
	unlock()
	h.awaitVerdicts(t)
	h.stop()
	agreeWithVault(t, h.e2e)
	// The events of the locked time were kept and sent once it was free.
	for _, v := range h.p.Slots() {
		evs, err := h.led.Events(context.Background(), v.Unit)
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]bool{}
		for _, e := range evs {
			kinds[e.Kind] = true
		}
		if !kinds["registered"] || !kinds["verdict"] {
			t.Errorf("slot %s unit %d events lack registered or verdict: %v", v.ID, v.Unit, kinds)
		}
	}
}

// TestLedgerLockedPastRegisterTimeout: on a proxy line, a ledger locked
// for longer than the registration timeout does not fail the board: the
// vault signed (the serial is spooled), so the unit waits for the ledger,
// says so, and passes once it is free.
func TestLedgerLockedPastRegisterTimeout(t *testing.T) {
	h := newHeldBench(t, benchOpt{ledger: []ledger.Option{ledger.WithBusyTimeout(50 * time.Millisecond)}, registerTimeout: 2 * time.Second}, "B1")
	h.w.await(t, 0, "A1 registering", func(ev lines.Event) bool {
		return ev.Kind == lines.EventState && ev.Slot == "A1" && ev.State == lines.StateRegister
	})
	unlock := lockLedger(t, h.led.Path())
	h.release()
	h.w.await(t, 0, "A1 waiting past its timeout", func(ev lines.Event) bool {
		return ev.Kind == lines.EventNotice && ev.Slot == "A1" && strings.Contains(ev.Text, "still waiting for the ledger")
	})
	if v := slotView(h.p, "A1"); v.State != lines.StateRegister {
		t.Errorf("A1 is %s %s past its timeout", v.State, v.Reason)
	}
	unlock()
	if v, _ := h.w.await(t, 0, "A1's verdict", verdictOf("A1")); v.State != lines.StatePass {
		t.Errorf("A1: %s %s %s", v.State, v.Reason, v.Detail)
	}
	h.stop()
	agreeWithVault(t, h.e2e)
}

// TestFullDiskLosesNoSerial: the data directory's disk fills up while both
// boards register (a tmpfs, its write-ahead log emptied first so the
// ledger needs new room). No signed serial is lost: each goes into the
// spool's reserve, then the ledger; the ledger equals the vault's signing
// log. Needs root (it mounts a tmpfs).
func TestFullDiskLosesNoSerial(t *testing.T) {
	var disk string
	h := newHeldBench(t, benchOpt{registerTimeout: 3 * time.Minute, edit: func(st *lines.Station) {
		disk = disktest.Tmpfs(t, st.DataDir, "48m")
	}})
	h.awaitRegistering(t)
	if err := h.led.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	free := disktest.Fill(t, disk)
	h.release()
	// Both boards get their serials: the spool's reserve made room.
	for _, slot := range []string{"A1", "B1"} {
		ev, _ := h.w.await(t, 0, slot+" registered", func(ev lines.Event) bool {
			return ev.Slot == slot && (ev.Kind == lines.EventVerdict || ev.Kind == lines.EventNotice && strings.Contains(ev.Text, "the ledger cannot record"))
		})
		t.Logf("%s on the full disk: %s %s %s", slot, ev.Kind, ev.State, ev.Text)
	}
	// The spool met the full disk: it gave its reserve up for the serials.
	if _, err := os.Stat(filepath.Join(lines.SpoolDir(h.st), ".reserve")); !os.IsNotExist(err) {
		t.Errorf("the spool's reserve is still there (%v): the disk was not full for it", err)
	}
	free()
	h.awaitVerdicts(t)
	h.stop()
	agreeWithVault(t, h.e2e)
}

// TestStopWaitsForConsoleSerial: the station is stopped while a console
// line's board registers (with the vault itself). The stop says what it
// waits for, the board's serial is read and recorded within the grace, and
// the ledger equals the vault's signing log.
func TestStopWaitsForConsoleSerial(t *testing.T) {
	h := newHeldBench(t, benchOpt{registerTimeout: 3 * time.Minute})
	h.awaitRegistering(t)
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	ev, _ := h.w.await(t, 0, "the stop's notice", func(ev lines.Event) bool {
		return ev.Kind == lines.EventNotice && strings.HasPrefix(ev.Text, "stopping:")
	})
	if !strings.Contains(ev.Text, "B1") || strings.Contains(ev.Text, "A1") {
		t.Errorf("stop notice %q: want the console line's slot B1 only", ev.Text)
	}
	h.release() // the board registers after the stop began
	<-stopped
	v := slotView(h.p, "B1")
	if v.Outcome != ledger.UnitPass || v.Serial == "" {
		t.Errorf("B1 after the stop: %+v", v)
	}
	// A1's board registers through the proxy, which stopped: nothing was
	// signed for it, and its unit was interrupted.
	if a := slotView(h.p, "A1"); a.Outcome != ledger.UnitAborted {
		t.Errorf("A1 after the stop: %s %s", a.Outcome, a.Reason)
	}
	agreeWithVault(t, h.e2e)
}

// TestConsoleSerialSignedWhileStationDown: a console line's board
// registers with the vault while the station is gone (stopped without
// grace, as a kill leaves it), so the station never learnt the serial.
// At the next start, with the board still in its slot, the station reads
// the serial from it for the interrupted unit before anything else, and
// the ledger equals the vault's signing log; with the board gone, the
// start's reconciliation names the serial at once (not-in-ledger) instead
// of the loss going unseen.
func TestConsoleSerialSignedWhileStationDown(t *testing.T) {
	for _, boardStays := range []bool{true, false} {
		t.Run(map[bool]string{true: "board in its slot", false: "board gone"}[boardStays], func(t *testing.T) {
			h := newHeldBench(t, benchOpt{stopGrace: time.Nanosecond, reconcileEvery: time.Hour})
			h.awaitRegistering(t)
			h.stop()
			unit := slotView(h.p, "B1").Unit
			h.release()
			board := h.bench.Slots[1].Board
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // only turns a hang into a failure
			defer cancel()
			signed, err := board.WaitRegistered(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if as, _ := h.led.SerialAssertions(ctx, ledger.AssertionFilter{Serial: signed.Serial}); len(as) != 0 {
				t.Fatalf("the stopped station recorded %s", signed.Serial)
			}
			proofWait := 30 * time.Second
			if !boardStays {
				board.Remove()
				proofWait = 2 * time.Second // nothing answers: no need to wait long
			}
			h.p.Close()
			p, err := lines.NewPipeline(ctx, h.st, lines.Options{Hardware: h.bench, Ledger: h.led, Logger: zerolog.Nop(), AllowNonUSB: true,
				ReconcileEvery: time.Hour, ProofWait: proofWait, PollEvery: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			p.SetDisabled("A1", true)
			w := watch(p)
			rctx, rcancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { p.Run(rctx); close(done) }()
			defer func() { rcancel(); <-done }()
			ev, _ := w.await(t, 0, "B1's notice on its interrupted unit", func(ev lines.Event) bool {
				return ev.Kind == lines.EventNotice && ev.Slot == "B1"
			})
			if boardStays {
				if ev.Unit != unit || !strings.Contains(ev.Text, "serial "+signed.Serial) || !strings.Contains(ev.Text, "recorded for unit") {
					t.Errorf("notice %+v", ev)
				}
				as, err := h.led.SerialAssertions(ctx, ledger.AssertionFilter{UnitID: unit})
				if err != nil || len(as) != 1 || as[0].DeviceKeyID != signed.DeviceKeyID {
					t.Fatalf("unit %d's assertions %+v %v", unit, as, err)
				}
				if u, _ := h.led.Unit(ctx, unit); u.State != ledger.UnitAborted {
					t.Errorf("the unit is %s, want it interrupted still", u.State)
				}
				rcancel()
				<-done
				agreeWithVault(t, h.e2e)
				return
			}
			if !strings.Contains(ev.Text, "could not be read") {
				t.Errorf("notice %+v", ev)
			}
			ev, _ = w.await(t, 0, "the start's reconciliation", func(ev lines.Event) bool {
				return ev.Kind == lines.EventNotice && ev.Line == sim.LineFastboot && strings.Contains(ev.Text, "disagree")
			})
			if !strings.Contains(ev.Text, "not-in-ledger "+signed.Serial) {
				t.Errorf("notice %q does not name %s", ev.Text, signed.Serial)
			}
		})
	}
}
