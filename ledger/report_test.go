package ledger_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/flashstation/flashstation/ledger"
)

// twoLines records two lines' batches with a few units each:
// line1: HW1 pass, HW2 fail then pass; line2: HW3 fail (kernel-panic).
func twoLines(t *testing.T, l *ledger.Ledger) (b1, b2 int64) {
	t.Helper()
	ctx := context.Background()
	b1 = seed(t, l)
	if err := l.EnsureLine(ctx, ledger.Line{ID: "line2", StationID: "bench-01", Name: "Line 2", BrandID: "acme", Model: "acme-gw-armhf"}); err != nil {
		t.Fatal(err)
	}
	b2, err := l.StartBatch(ctx, ledger.Batch{LineID: "line2", Operator: "ana", Planned: 4})
	if err != nil {
		t.Fatal(err)
	}
	unit := func(batch int64, line, slot, hw, state, reason string) int64 {
		id, err := l.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: line, SlotID: slot, HWSerial: hw})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.FinishUnit(ctx, id, state, reason, ""); err != nil {
			t.Fatal(err)
		}
		return id
	}
	// The serial is learned while the unit runs: a finished unit is never changed.
	pass, err := l.StartUnit(ctx, ledger.Unit{BatchID: b1, LineID: "line1", SlotID: "s1", HWSerial: "HW1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.UpdateUnit(ctx, pass, ledger.UnitProgress{Serial: "acme-1"}); err != nil {
		t.Fatal(err)
	}
	if err := l.FinishUnit(ctx, pass, ledger.UnitPass, "", ""); err != nil {
		t.Fatal(err)
	}
	a := assertion("acme-1", 0)
	a.UnitID = pass
	if _, _, err := l.RecordSerialAssertion(ctx, a); err != nil {
		t.Fatal(err)
	}
	unit(b1, "line1", "s2", "HW2", ledger.UnitFail, "write-error")
	unit(b1, "line1", "s2", "HW2", ledger.UnitPass, "")
	unit(b2, "line2", "s3", "HW3", ledger.UnitFail, "kernel-panic")
	return b1, b2
}

func TestStatsOverSeveralBatches(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l := be.open(t)
		b1, b2 := twoLines(t, l)
		tests := []struct {
			name                   string
			f                      ledger.StatsFilter
			units, passed, failed  int
			planned, boards, slots int
			yield, firstPass       float64
			pareto                 int
		}{
			{"line1 batch", ledger.StatsFilter{BatchID: b1}, 3, 2, 1, 8, 2, 2, 1, 0.5, 1},
			{"line2 batch", ledger.StatsFilter{BatchID: b2}, 1, 0, 1, 4, 1, 1, 0, 0, 1},
			{"both batches", ledger.StatsFilter{Batches: []int64{b1, b2}}, 4, 2, 2, 12, 3, 3, 2.0 / 3, 1.0 / 3, 2},
			{"everything", ledger.StatsFilter{}, 4, 2, 2, 12, 3, 3, 2.0 / 3, 1.0 / 3, 2},
			{"line2 by line", ledger.StatsFilter{LineID: "line2"}, 1, 0, 1, 4, 1, 1, 0, 0, 1},
			{"failures only", ledger.StatsFilter{Verdict: ledger.UnitFail}, 2, 0, 2, 12, 2, 2, 0, 0, 2},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, err := l.Stats(ctx, tt.f)
				if err != nil {
					t.Fatal(err)
				}
				if s.Units != tt.units || s.Passed != tt.passed || s.Failed != tt.failed || s.Planned != tt.planned ||
					s.Boards != tt.boards || len(s.Slots) != tt.slots || len(s.Pareto) != tt.pareto {
					t.Errorf("stats = %+v", s)
				}
				if !near(s.Yield, tt.yield) {
					t.Errorf("yield = %v, want %v", fig(s.Yield), tt.yield)
				}
				if !near(s.FirstPassYield, tt.firstPass) {
					t.Errorf("first-pass yield = %v, want %v", fig(s.FirstPassYield), tt.firstPass)
				}
			})
		}
		us, err := l.Units(ctx, ledger.UnitFilter{Batches: []int64{b1, b2}, Limit: 3})
		if err != nil || len(us) != 3 || us[0].HWSerial != "HW3" {
			t.Errorf("recent units of both batches = %+v, %v", us, err)
		}
		if us, _ := l.Units(ctx, ledger.UnitFilter{Batches: []int64{b2}}); len(us) != 1 {
			t.Errorf("units of line2's batch = %+v", us)
		}
	})
}

func TestEvidenceBundle(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l := be.open(t)
		twoLines(t, l)
		units, err := l.UnitsBySerial(ctx, "acme-1")
		if err != nil || len(units) != 1 {
			t.Fatalf("units by serial = %v, %v", units, err)
		}
		dir := t.TempDir()
		clean := filepath.Join(dir, "console.log")
		if err := os.WriteFile(clean, []byte("U-Boot 2024.01\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := l.AddTranscript(ctx, ledger.Transcript{UnitID: units[0].ID, SlotID: "s1", Kind: ledger.TranscriptClean, Path: clean, Size: 15}); err != nil {
			t.Fatal(err)
		}
		e, err := l.Evidence(ctx, units[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Assertions) != 1 || e.Clean != clean || e.Unit.HWSerial != "HW1" {
			t.Fatalf("evidence = %+v", e)
		}
		name := ledger.BundleName(e.Unit)
		if name != "acme-1-unit1.tar.gz" {
			t.Errorf("bundle name = %q", name)
		}
		path := filepath.Join(dir, name)
		if err := ledger.WriteBundleFile(path, e); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got := bundleFiles(t, raw)
		if got["console.log"] != "U-Boot 2024.01\n" || !bytes.Contains([]byte(got["serial.assertion"]), []byte("serial: acme-1")) ||
			!bytes.Contains([]byte(got["unit.json"]), []byte(`"HWSerial": "HW1"`)) {
			t.Errorf("bundle = %v", got)
		}
		// The bundle carries the chain head and the unit's assertions' links.
		head, err := l.StationChainHead(ctx, "bench-01")
		if err != nil || head.Rows != 1 {
			t.Fatalf("chain head %+v %v", head, err)
		}
		var doc struct {
			Chain ledger.ChainHead       `json:"ledger_chain"`
			Links []ledger.AssertionLink `json:"assertion_links"`
		}
		if err := json.Unmarshal([]byte(got["unit.json"]), &doc); err != nil || doc.Chain != head || len(doc.Links) != 1 ||
			doc.Links[0].LinkSHA256 != head.Link || doc.Links[0].PrevSHA256 != ledger.ZeroLink || doc.Links[0].Serial != "acme-1" {
			t.Errorf("bundle's chain: %+v %v\n%s", doc, err, got["unit.json"])
		}
		if _, err := l.Evidence(ctx, 999); err == nil {
			t.Error("evidence of a missing unit")
		}
		if err := ledger.WriteBundleFile(filepath.Join(dir, "missing", "x.tar.gz"), e); err == nil {
			t.Error("bundle into a missing directory")
		}
	})
}

// bundleFiles is a bundle's files by name.
func bundleFiles(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = string(b)
	}
	return got
}
