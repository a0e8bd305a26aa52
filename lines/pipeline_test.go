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
	led, err := ledger.Open(context.Background(), filepath.Join(st.DataDir, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	led.EnsureStation(context.Background(), ledger.Station{ID: st.ID})
	for _, l := range st.Lines {
		led.EnsureLine(context.Background(), ledger.Line{ID: l.ID, StationID: st.ID})
	}
	p, err := lines.NewPipeline(context.Background(), st, lines.Options{Hardware: bench, Ledger: led, Logger: zerolog.Nop(),
		BatchSize: batch, AllowNonUSB: true, RegisterTimeout: 30 * time.Second, PollEvery: 50 * time.Millisecond})
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
	if s.Passed != 9 || s.Failed != 7 {
		t.Errorf("passed %d failed %d, want 9 and 7", s.Passed, s.Failed)
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
			as, _ := e.led.SerialAssertions(context.Background(), ledger.AssertionFilter{UnitID: u.Unit})
			if len(as) != 1 {
				t.Errorf("%s: %d assertions", u.Slot, len(as))
				continue
			}
			a, err := serialvault.Decode(as[0].Text)
			if err == nil {
				_, err = ring.Verify(a)
			}
			if err != nil {
				t.Errorf("%s: assertion: %v", u.Slot, err)
			}
			wantVia := ledger.ViaProxy
			if strings.HasPrefix(u.Slot, "B") {
				wantVia = ledger.ViaConsole
			}
			if as[0].Via != wantVia {
				t.Errorf("%s: captured via %s, want %s", u.Slot, as[0].Via, wantVia)
			}
			continue
		}
		if u.Verdict != ledger.UnitFail || u.Reason != reason {
			t.Errorf("%s: %s %q, want fail %q (%s)", u.Slot, u.Verdict, u.Reason, reason, u.Detail)
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
	if err != nil || st.Passed != 9 || len(st.Pareto) != 7 || st.Planned != 16 {
		t.Errorf("stats %+v %v", st, err)
	}
	// Each line's health: its batch done, its vault checked, line1's proxy
	// recorded A1's pass and forwarded A8's refusal.
	hs := e.p.Health()
	if len(hs) != 2 {
		t.Fatalf("health of %d lines", len(hs))
	}
	for _, h := range hs {
		if h.Finished != 8 || !h.VaultOK || h.VaultChecked.IsZero() || h.Batch.ID == 0 || strings.Contains(h.Vault, "@") {
			t.Errorf("health %+v", h)
		}
	}
	if hs[0].Proxy == "" || hs[0].ProxyStats.Recorded != 1 || hs[0].ProxyStats.VaultErrors == 0 || hs[1].Proxy != "" {
		t.Errorf("proxies: %+v / %+v", hs[0], hs[1])
	}
}

// TestRetryAndDisable: a failed board can be retried once it is back in
// flash mode; a disabled slot takes no board.
func TestRetryAndDisable(t *testing.T) {
	e := startBench(t, sim.BenchConfig{Boards: 2, Speed: 100}, 0)
	// Slot B1 out of service: its board waits.
	if err := e.p.SetDisabled("B1", true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.p.Run(ctx)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %+v", what, e.p.Slots())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	slot := func(id string) lines.SlotView {
		for _, v := range e.p.Slots() {
			if v.ID == id {
				return v
			}
		}
		return lines.SlotView{}
	}
	waitFor("A1 to pass", func() bool { return slot("A1").State == lines.StatePass })
	if v := slot("B1"); v.State != lines.StateDisabled || v.Unit != 0 {
		t.Errorf("disabled slot worked: %+v", v)
	}
	// The operator puts a fresh board in A1 and it starts on its own.
	if _, err := e.bench.Replace(ctx, 0); err != nil {
		t.Fatal(err)
	}
	first := slot("A1").Unit
	waitFor("A1 to start a new unit", func() bool { return slot("A1").Unit != first && slot("A1").Unit != 0 })
	waitFor("A1 to pass again", func() bool { return slot("A1").State == lines.StatePass })
	e.p.SetDisabled("B1", false)
	waitFor("B1 to pass once enabled", func() bool { return slot("B1").State == lines.StatePass })
	if err := e.p.Retry("nope"); err == nil {
		t.Error("retry of an unknown slot accepted")
	}
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
