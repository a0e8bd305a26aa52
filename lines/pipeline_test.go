package lines_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/sim"
	"github.com/flashstation/flashstation/usb"
)

type e2e struct {
	bench *sim.Bench
	st    *lines.Station
	led   *ledger.Ledger
	p     *lines.Pipeline
}

func startBench(t *testing.T, cfg sim.BenchConfig, batch int) *e2e {
	t.Helper()
	return startBenchWith(t, cfg, batch, benchOpt{})
}

// benchOpt changes a bench's station: edit changes the loaded station
// file, and the pipeline's waits (zero: the tests' defaults).
type benchOpt struct {
	edit            func(st *lines.Station)
	registerTimeout time.Duration
	proofWait       time.Duration
	reconcileEvery  time.Duration
	ledger          []ledger.Option
	stopGrace       time.Duration
	powerOffWait    time.Duration
	powerOnWait     time.Duration
}

func startBenchWith(t *testing.T, cfg sim.BenchConfig, batch int, o benchOpt) *e2e {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end on a simulated bench")
	}
	cfg.Dir, cfg.FastKeys = t.TempDir(), true
	if cfg.ImageSize == 0 {
		cfg.ImageSize = 16 << 20
	}
	bench, err := sim.NewBench(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bench.Close)
	st, problems, err := lines.LoadValid(bench.ConfigPath)
	if err != nil {
		t.Fatalf("%v %v", err, problems)
	}
	if o.edit != nil {
		o.edit(st)
	}
	if o.registerTimeout == 0 {
		o.registerTimeout = 30 * time.Second
	}
	led, err := ledger.Open(context.Background(), filepath.Join(st.DataDir, ledger.FileName), o.ledger...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	led.EnsureStation(context.Background(), ledger.Station{ID: st.ID})
	for _, l := range st.Lines {
		led.EnsureLine(context.Background(), ledger.Line{ID: l.ID, StationID: st.ID})
	}
	p, err := lines.NewPipeline(context.Background(), st, lines.Options{Hardware: bench, Ledger: led, Logger: zerolog.Nop(),
		BatchSize: batch, AllowNonUSB: true, RegisterTimeout: o.registerTimeout, ProofWait: o.proofWait, ReconcileEvery: o.reconcileEvery, StopGrace: o.stopGrace, PollEvery: 50 * time.Millisecond,
		PowerOffWait: o.powerOffWait, PowerOnWait: o.powerOnWait})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &e2e{bench: bench, st: st, led: led, p: p}
}

// runUntilDone runs the pipeline until its batch is done.
func (e *e2e) runUntilDone(t *testing.T, timeout time.Duration) []lines.Event {
	t.Helper()
	events := e.p.Subscribe(4096)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan struct{})
	go func() { e.p.Run(ctx); close(done) }()
	var evs []lines.Event
	var mu sync.Mutex
	go func() {
		for ev := range events {
			mu.Lock()
			evs = append(evs, ev)
			mu.Unlock()
		}
	}()
	select {
	case <-e.p.Done():
	case <-ctx.Done():
		t.Errorf("batch not done within %s: %+v", timeout, e.p.Slots())
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return append([]lines.Event(nil), evs...)
}

func (e *e2e) summary(t *testing.T) lines.Summary {
	var ids []int64
	for _, b := range e.p.Batches() {
		ids = append(ids, b.ID)
	}
	s, err := lines.Summarize(context.Background(), e.led, ids)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkAssertion: a passed unit holds one serial assertion that verifies
// against the bench's brand key, captured through the proxy on line 1's
// slots (A) and over the console on line 2's (B).
func (e *e2e) checkAssertion(t *testing.T, ring *serialvault.KeyRing, u lines.UnitSummary) {
	t.Helper()
	as, _ := e.led.SerialAssertions(context.Background(), ledger.AssertionFilter{UnitID: u.Unit})
	if len(as) != 1 {
		t.Errorf("%s: %d assertions", u.Slot, len(as))
		return
	}
	a, err := serialvault.Decode(as[0].Text)
	if err == nil {
		_, err = ring.Verify(a)
	}
	if err != nil {
		t.Errorf("%s: assertion: %v", u.Slot, err)
	} else if s, err := serialvault.AsSerial(a); err != nil || s.DeviceKey.Bits() != 2048 {
		// The bench's boards make 2048-bit keys: a big bench boots, it does
		// not spend its time making keys.
		t.Errorf("%s: device key: %v", u.Slot, err)
	}
	wantVia := ledger.ViaProxy
	if strings.HasPrefix(u.Slot, "B") {
		wantVia = ledger.ViaConsole
	}
	if as[0].Via != wantVia {
		t.Errorf("%s: captured via %s, want %s", u.Slot, as[0].Via, wantVia)
	}
}

// TestBatchWithFaults runs a batch of 16 boards on two lines at once, with
// the fault mix: each unit ends with the verdict and reason its fault
// causes, and every pass holds a verified serial assertion.
func TestBatchWithFaults(t *testing.T) {
	e := startBench(t, sim.BenchConfig{Boards: 16, Faults: true, Speed: 100}, 8)
	evs := e.runUntilDone(t, 3*time.Minute)
	want := map[string]string{ // slot -> reason ("" = pass)
		"A1": "", "B1": "", "A2": flash.ReasonWriteError, "B2": "", "A3": console.ReasonKernelPanic, "B3": "",
		"A4": console.ReasonStageTimeout, "B4": "", "A5": console.ReasonBaudMismatch, "B5": "", "A6": flash.ReasonUnplugged,
		"B6": "", "A7": console.ReasonBootLoop, "B7": "", "A8": lines.ReasonVaultRefused, "B8": "",
	}
	s := e.summary(t)
	if s.Passed != 9 || s.Failed != 5 || s.Errors != 2 || s.Aborted != 0 {
		t.Errorf("passed %d failed %d errors %d aborted %d, want 9, 5, 2 and 0", s.Passed, s.Failed, s.Errors, s.Aborted)
	}
	ring := serialvault.NewKeyRing()
	if err := ring.AddFile(filepath.Join(e.bench.Dir, "vault-key.pub")); err != nil {
		t.Fatal(err)
	}
	for _, u := range s.Units {
		reason, ok := want[u.Slot]
		if !ok {
			t.Errorf("unexpected slot %s", u.Slot)
			continue
		}
		if reason == "" {
			if u.Verdict != ledger.UnitPass || u.Serial != u.HWSerial {
				t.Errorf("%s: %s %s (%s)", u.Slot, u.Verdict, u.Reason, u.Detail)
			}
			e.checkAssertion(t, ring, u)
			continue
		}
		// The board's faults fail; the station's (its console set-up, the
		// vault) are errors.
		want := ledger.UnitFail
		if reason == console.ReasonBaudMismatch || reason == lines.ReasonVaultRefused {
			want = ledger.UnitError
		}
		if u.Verdict != want || u.Reason != reason {
			t.Errorf("%s: %s %q, want %s %q (%s)", u.Slot, u.Verdict, u.Reason, want, reason, u.Detail)
		}
	}
	// The event stream carried every verdict, and transcripts were kept.
	verdicts := 0
	for _, ev := range evs {
		if ev.Kind == lines.EventVerdict {
			verdicts++
		}
	}
	if verdicts != 16 {
		t.Errorf("%d verdict events", verdicts)
	}
	for _, u := range s.Units {
		ts, _ := e.led.Transcripts(context.Background(), u.Unit)
		booted := u.Reason != flash.ReasonWriteError && u.Reason != flash.ReasonUnplugged
		if len(ts) != 2 || (booted && (ts[0].Size == 0 || ts[1].Size == 0)) {
			t.Errorf("%s: transcripts %+v", u.Slot, ts)
		}
	}
	st, err := e.led.Stats(context.Background(), ledger.StatsFilter{})
	if err != nil || st.Passed != 9 || len(st.Pareto) != 5 || len(st.ErrorReasons) != 2 || st.Planned != 16 {
		t.Errorf("stats %+v %v", st, err)
	}
	// Each line's health: its batch done, its vault checked, line1's proxy
	// recorded A1's pass and refused A8's stale requests.
	hs := e.p.Health()
	if len(hs) != 2 {
		t.Fatalf("health of %d lines", len(hs))
	}
	for _, h := range hs {
		if h.Finished != 8 || h.Batch.State != ledger.BatchClosed || h.Batch.CloseReason != ledger.BatchComplete || !h.VaultOK || h.VaultChecked.IsZero() || h.Batch.ID == 0 || strings.Contains(h.Vault, "@") {
			t.Errorf("health %+v", h)
		}
	}
	// A8's stale request-ids were refused by the station, never sent to
	// the vault.
	if hs[0].Proxy == "" || hs[0].ProxyStats.Recorded != 1 || hs[0].ProxyStats.BadNonce == 0 || hs[0].ProxyStats.VaultErrors != 0 || hs[1].Proxy != "" {
		t.Errorf("proxies: %+v / %+v", hs[0], hs[1])
	}
}

// watcher collects a pipeline's events so a test can wait for the one
// that proves a state, never for a time.
type watcher struct {
	mu   sync.Mutex
	evs  []lines.Event
	more chan struct{} // closed and replaced on each event
}

func watch(p *lines.Pipeline) *watcher {
	w := &watcher{more: make(chan struct{})}
	ch := p.Subscribe(4096)
	go func() {
		for ev := range ch {
			w.mu.Lock()
			w.evs = append(w.evs, ev)
			close(w.more)
			w.more = make(chan struct{})
			w.mu.Unlock()
		}
	}()
	return w
}

// await returns the first event from index from on that matches, and the
// index after it. The ceiling only turns a hang into a failure.
func (w *watcher) await(t *testing.T, from int, what string, match func(lines.Event) bool) (lines.Event, int) {
	t.Helper()
	ceiling := time.After(3 * time.Minute)
	for {
		w.mu.Lock()
		for i := from; i < len(w.evs); i++ {
			if match(w.evs[i]) {
				ev := w.evs[i]
				w.mu.Unlock()
				return ev, i + 1
			}
		}
		from = len(w.evs)
		more := w.more
		w.mu.Unlock()
		select {
		case <-more:
		case <-ceiling:
			var last []string
			for _, ev := range w.events()[max(0, len(w.events())-20):] {
				last = append(last, fmt.Sprintf("%s %s u%d %s %s %s %s", ev.Slot, ev.Kind, ev.Unit, ev.State, ev.Stage, ev.Reason, ev.Text))
			}
			t.Fatalf("no event: %s; the last events:\n%s", what, strings.Join(last, "\n"))
		}
	}
}

func (w *watcher) events() []lines.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]lines.Event(nil), w.evs...)
}

func verdictOf(slot string) func(lines.Event) bool {
	return func(ev lines.Event) bool { return ev.Kind == lines.EventVerdict && ev.Slot == slot }
}

// TestRetryAndDisable: a slot disabled before the station runs never takes
// the board waiting in it; a fresh board swapped in quicker than the poll
// can see an empty slot starts on its own; a slot put back in service
// takes its board.
func TestRetryAndDisable(t *testing.T) {
	e := startBench(t, sim.BenchConfig{Boards: 2, Speed: 100}, 0)
	// Slot B1 out of service before Run: its board waits.
	if err := e.p.SetDisabled("B1", true); err != nil {
		t.Fatal(err)
	}
	w := watch(e.p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	v, i := w.await(t, 0, "A1's verdict", verdictOf("A1"))
	if v.State != lines.StatePass {
		t.Fatalf("A1: %s %s %s", v.State, v.Reason, v.Detail)
	}
	first := v.Unit
	// The operator swaps a fresh board in A1 at once (the poll never sees
	// the slot empty) and it starts on its own.
	if _, err := e.bench.Replace(ctx, 0); err != nil {
		t.Fatal(err)
	}
	v, i = w.await(t, i, "A1's second verdict", verdictOf("A1"))
	if v.State != lines.StatePass || v.Unit == first {
		t.Fatalf("A1 again: unit %d (first %d) %s %s", v.Unit, first, v.State, v.Reason)
	}
	for _, ev := range w.events() {
		if ev.Slot == "B1" && (ev.Unit != 0 || ev.State != lines.StateDisabled) {
			t.Fatalf("the disabled slot worked: %+v", ev)
		}
	}
	if s := slotView(e.p, "B1"); s.State != lines.StateDisabled || s.Unit != 0 {
		t.Errorf("B1 while disabled: %+v", s)
	}
	if err := e.p.SetDisabled("B1", false); err != nil {
		t.Fatal(err)
	}
	if v, _ = w.await(t, i, "B1's verdict once enabled", verdictOf("B1")); v.State != lines.StatePass {
		t.Errorf("B1: %s %s %s", v.State, v.Reason, v.Detail)
	}
	if err := e.p.Retry("nope"); err == nil {
		t.Error("retry of an unknown slot accepted")
	}
}

func slotView(p *lines.Pipeline, id string) lines.SlotView {
	for _, v := range p.Slots() {
		if v.ID == id {
			return v
		}
	}
	return lines.SlotView{}
}

// TestRealHardwareRefusesMissingDisk: a disk that sysfs listed but that is
// gone (or is not a block device) by the time the slot opens it is refused
// with no-device, and no file is made in its place.
func TestRealHardwareRefusesMissingDisk(t *testing.T) {
	missing := fmt.Sprintf("/dev/flashstation-test-gone-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { os.Remove(missing) })
	for _, tc := range []struct {
		name, disk string
	}{
		{"gone", missing},
		{"character device", "/dev/null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hw lines.RealHardware
			job, err := hw.OpenJob(context.Background(), usb.Device{PortPath: "1-1.2", Disks: []string{tc.disk}},
				flash.TargetOptions{Block: flash.BlockOptions{AllowNonUSB: true}})
			if job != nil {
				job.Close()
			}
			var f *flash.Failure
			if !errors.As(err, &f) || f.Reason != flash.ReasonNoDevice {
				t.Fatalf("OpenJob(%s) = %v, want reason %s", tc.disk, err, flash.ReasonNoDevice)
			}
		})
	}
	if _, err := os.Lstat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s was created (%v)", missing, err)
	}
}

// TestBatchPlanned: a batch of one board per line takes one board; the
// line's other board waits (said once), and the batch closes complete.
func TestBatchPlanned(t *testing.T) {
	e := startBench(t, sim.BenchConfig{Boards: 4, Speed: 100}, 1)
	evs := e.runUntilDone(t, 3*time.Minute)
	units, err := e.led.Units(context.Background(), ledger.UnitFilter{})
	if err != nil || len(units) != 2 {
		t.Fatalf("%d units, want one per line: %+v %v", len(units), units, err)
	}
	waits := map[string]int{}
	for _, ev := range evs {
		if ev.Kind == lines.EventNotice && strings.Contains(ev.Text, "waits for the next batch") {
			waits[ev.Slot]++
		}
	}
	if len(waits) != 2 {
		t.Errorf("boards told to wait: %v", waits)
	}
	for slot, n := range waits {
		if n != 1 {
			t.Errorf("%s told %d times", slot, n)
		}
	}
	for line, b := range e.p.Batches() {
		if b.State != ledger.BatchClosed || b.CloseReason != ledger.BatchComplete {
			t.Errorf("%s: batch %+v", line, b)
		}
	}
}

// TestEndBatchAndCleanStop: the operator ends line1's batch while its board
// flashes: that unit is aborted (batch-ended), the batch closes "operator"
// and the line takes no new board; line2 goes on; the clean stop closes
// line2's batch "stopped", and a new pipeline on the same ledger opens new
// batches.
func TestEndBatchAndCleanStop(t *testing.T) {
	e := startBench(t, sim.BenchConfig{Boards: 2, Speed: 20}, 0)
	w := watch(e.p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.p.Run(ctx); close(done) }()
	_, i := w.await(t, 0, "A1 flashing", func(ev lines.Event) bool {
		return ev.Slot == "A1" && ev.Kind == lines.EventState && ev.State == lines.StateFlashing
	})
	if err := e.p.EndBatch("line1"); err != nil {
		t.Fatal(err)
	}
	if err := e.p.EndBatch("nope"); err == nil {
		t.Error("ended the batch of an unknown line")
	}
	v, _ := w.await(t, i, "A1's verdict", verdictOf("A1"))
	if v.Outcome != ledger.UnitAborted || v.Reason != lines.ReasonBatchEnded {
		t.Errorf("A1 after the batch ended: %s %s %s", v.Outcome, v.Reason, v.Detail)
	}
	if v, _ = w.await(t, 0, "B1's verdict", verdictOf("B1")); v.Outcome != ledger.UnitPass {
		t.Errorf("B1: %s %s %s", v.Outcome, v.Reason, v.Detail)
	}
	cancel()
	<-done
	b := e.p.Batches()
	if b["line1"].CloseReason != ledger.BatchOperator || b["line2"].CloseReason != ledger.BatchStopped {
		t.Errorf("batches after the stop: %+v", b)
	}
	u, err := e.led.Unit(context.Background(), v.Unit)
	if err != nil || u.State != ledger.UnitPass {
		t.Errorf("B1's unit: %+v %v", u, err)
	}
	open, err := e.led.OpenBatches(context.Background(), e.st.ID)
	if err != nil || len(open) != 0 {
		t.Errorf("open batches after a clean stop: %+v %v", open, err)
	}
	p2, err := lines.NewPipeline(context.Background(), e.st, lines.Options{Hardware: e.bench, Ledger: e.led, Logger: zerolog.Nop(), AllowNonUSB: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	for line, nb := range p2.Batches() {
		if nb.ID == b[line].ID || nb.State != ledger.BatchOpen {
			t.Errorf("%s: the new run has batch %+v (old %d)", line, nb, b[line].ID)
		}
	}
}
