package lines_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/seed"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/sim"
)

// otherModel writes, next to the bench's model, a model of the same brand
// signed by the same key but for another device (its model name changed)
// and returns its path: a line given it refuses the bench's image.
func otherModel(t *testing.T, st *lines.Station, change map[string]any) string {
	t.Helper()
	dir := filepath.Dir(st.Lines[0].Model)
	data, err := os.ReadFile(st.Lines[0].Model)
	if err != nil {
		t.Fatal(err)
	}
	a, err := serialvault.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]any{}
	for _, hd := range a.Headers() {
		if hd.Name != "sign-key-sha3-384" {
			h[hd.Name] = hd.Value
		}
	}
	for k, v := range change {
		h[k] = v
	}
	key, _, err := serialvault.LoadOrCreateKey(filepath.Join(dir, "vault-key.pem"), 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := serialvault.Sign(h, nil, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "other-model.assert")
	if err := os.WriteFile(path, other.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestImageGateHoldsALine: the second line's model is another device's,
// so the gate refuses the image for it: that line is held (no batch, no
// unit, its boards' disks untouched) while the first line flashes its
// batch, and the first line's units carry the image's identity.
func TestImageGateHoldsALine(t *testing.T) {
	e := startBenchWith(t, sim.BenchConfig{Boards: 4, Speed: 100}, 2, benchOpt{edit: func(st *lines.Station) {
		st.Lines[1].Model = otherModel(t, st, map[string]any{"model": "acme-other-device"})
	}})
	held := e.st.Lines[1].ID
	var gate *seed.Verdict
	for _, h := range e.p.Health() {
		if h.Line == held {
			gate = h.Image
		} else if h.Image == nil || !h.Image.Pass {
			t.Errorf("line %s: the gate's verdict %+v, want a pass", h.Line, h.Image)
		}
	}
	if gate == nil || gate.Pass || gate.Cause != seed.CauseModelMismatch {
		t.Fatalf("held line %s: verdict %+v, want %s", held, gate, seed.CauseModelMismatch)
	}
	if !strings.Contains(problemFields(gate), "model") {
		t.Errorf("the refusal names %q, want the model header", problemFields(gate))
	}
	if _, ok := e.p.Batches()[held]; ok {
		t.Errorf("the held line has a batch: %+v", e.p.Batches()[held])
	}
	e.runUntilDone(t, 2*time.Minute)
	s := e.summary(t)
	if s.Passed != 2 || len(s.Units) != 2 {
		t.Errorf("passed %d of %d units, want the open line's 2", s.Passed, len(s.Units))
	}
	for _, u := range s.Units {
		if !strings.HasPrefix(u.Slot, "A") {
			t.Errorf("unit %d on the held line's slot %s", u.Unit, u.Slot)
		}
	}
	checked := 0
	for _, sl := range e.bench.Slots {
		if sl.Line != held {
			continue
		}
		b, ok := e.bench.BoardAt(sl.Port)
		if !ok {
			continue
		}
		checked++
		if written(t, b) {
			t.Errorf("board %s of the held line was written", b.Serial())
		}
	}
	if checked == 0 {
		t.Error("no board on the held line's slots to check")
	}
	bs, err := e.led.OpenBatches(context.Background(), e.st.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.LineID == held {
			t.Errorf("a batch %d is open on the held line", b.ID)
		}
	}
}

func problemFields(v *seed.Verdict) string {
	var f []string
	for _, p := range v.Problems {
		f = append(f, p.Field)
	}
	return strings.Join(f, ",")
}

// written reports whether a board's disk holds anything but zeros.
func written(t *testing.T, b *sim.Board) bool {
	t.Helper()
	data, err := os.ReadFile(b.StoragePath())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range data {
		if c != 0 {
			return true
		}
	}
	return false
}

// TestImageGateRefusesEveryLine: when the gate refuses the image of every
// line, the station has nothing it may flash: NewPipeline fails with
// ErrImagesRefused naming each line and its cause, and opens no batch.
func TestImageGateRefusesEveryLine(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end on a simulated bench")
	}
	bench, err := sim.NewBench(context.Background(), sim.BenchConfig{Dir: t.TempDir(), FastKeys: true, Boards: 2, ImageSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bench.Close)
	st, problems, err := lines.LoadValid(bench.ConfigPath)
	if err != nil {
		t.Fatalf("%v %v", err, problems)
	}
	st.Lines[0].Model = otherModel(t, st, map[string]any{"model": "acme-other-device"})
	dangerous := otherModel(t, st, map[string]any{"grade": "dangerous"})
	st.Lines[1].Model = dangerous
	led, err := ledger.Open(context.Background(), filepath.Join(st.DataDir, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	led.EnsureStation(context.Background(), ledger.Station{ID: st.ID})
	for _, l := range st.Lines {
		led.EnsureLine(context.Background(), ledger.Line{ID: l.ID, StationID: st.ID})
	}
	p, err := lines.NewPipeline(context.Background(), st, lines.Options{Hardware: bench, Ledger: led, Logger: zerolog.Nop(), BatchSize: 1, AllowNonUSB: true})
	if err == nil {
		p.Close()
		t.Fatal("NewPipeline accepted a station whose every image is refused")
	}
	if !errors.Is(err, lines.ErrImagesRefused) {
		t.Fatalf("error %v, want ErrImagesRefused", err)
	}
	for _, want := range []string{st.Lines[0].ID, st.Lines[1].ID, seed.CauseModelMismatch, "grade"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if bs, _ := led.OpenBatches(context.Background(), st.ID); len(bs) != 0 {
		t.Errorf("%d batches opened", len(bs))
	}
}

// TestOpenBatchOfAnotherImage: a killed station left a batch open that
// was of another image (another model digest and seed label): the new
// start closes it and opens a batch of the image the gate passed, whose
// identity it records.
func TestOpenBatchOfAnotherImage(t *testing.T) {
	var old int64
	e := startBenchWith(t, sim.BenchConfig{Boards: 2, Speed: 100}, 1, benchOpt{edit: func(st *lines.Station) {
		ctx := context.Background()
		led, err := ledger.Open(ctx, filepath.Join(st.DataDir, ledger.FileName))
		if err != nil {
			t.Fatal(err)
		}
		defer led.Close()
		led.EnsureStation(ctx, ledger.Station{ID: st.ID})
		led.EnsureLine(ctx, ledger.Line{ID: st.Lines[0].ID, StationID: st.ID})
		if old, err = led.StartBatch(ctx, ledger.Batch{LineID: st.Lines[0].ID, Planned: 5, ModelDigest: "last-months-model", SeedLabel: "20250101"}); err != nil {
			t.Fatal(err)
		}
	}})
	line := e.st.Lines[0].ID
	b := e.p.Batches()[line]
	if b.ID == 0 || b.ID == old {
		t.Fatalf("line %s runs batch %d, want a new one (the old open batch is %d)", line, b.ID, old)
	}
	var gate *seed.Verdict
	for _, h := range e.p.Health() {
		if h.Line == line {
			gate = h.Image
		}
	}
	if gate == nil || !gate.Pass || gate.Identity.SeedLabel == "" {
		t.Fatalf("gate %+v, want a pass with a seed label", gate)
	}
	if b.ModelDigest != gate.Identity.ModelDigest || b.SeedLabel != gate.Identity.SeedLabel || b.ModelSignKey != gate.Identity.SignKey {
		t.Errorf("batch identity %q %q %q, want the gate's %+v", b.ModelDigest, b.SeedLabel, b.ModelSignKey, gate.Identity)
	}
	ob, err := e.led.Batch(context.Background(), old)
	if err != nil {
		t.Fatal(err)
	}
	if ob.State == "open" || ob.CloseReason != ledger.BatchStopped {
		t.Errorf("old batch: state %s, closed %q; want it closed as stopped", ob.State, ob.CloseReason)
	}
}

// TestBoardBootsAnotherSeed: a board whose kernel names another recovery
// system than the image's seed label (it boots a stale SD card before the
// eMMC just written) fails seed-label-mismatch with both labels; the
// other board passes, its boot having named the image's label.
func TestBoardBootsAnotherSeed(t *testing.T) {
	e := startBench(t, sim.BenchConfig{Boards: 2, Speed: 100, FaultsOf: func(i int) sim.Faults {
		if i == 0 {
			return sim.Faults{OtherSeed: "20250101"}
		}
		return sim.Faults{}
	}}, 1)
	label := ""
	for _, h := range e.p.Health() {
		if h.Image != nil {
			label = h.Image.Identity.SeedLabel
		}
	}
	if label == "" {
		t.Fatal("the gate read no seed label from the bench's image")
	}
	e.runUntilDone(t, 2*time.Minute)
	s := e.summary(t)
	var failed, passed int
	for _, u := range s.Units {
		switch {
		case u.Verdict == ledger.UnitFail && u.Reason == console.ReasonSeedLabel:
			failed++
			if !strings.Contains(u.Detail, "20250101") || !strings.Contains(u.Detail, label) {
				t.Errorf("%s: detail %q names not both labels (20250101, %s)", u.Slot, u.Detail, label)
			}
		case u.Verdict == ledger.UnitPass:
			passed++
		default:
			t.Errorf("%s: %s %s (%s)", u.Slot, u.Verdict, u.Reason, u.Detail)
		}
	}
	if failed != 1 || passed != 1 {
		t.Errorf("%d failed seed-label-mismatch and %d passed, want 1 and 1", failed, passed)
	}
}
