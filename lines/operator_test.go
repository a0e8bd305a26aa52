package lines_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/sim"
)

// TestSetOperator: a station started without an operator is given one
// after its start: its batches record it, a batch that has one keeps it,
// and every operator action records who did it.
func TestSetOperator(t *testing.T) {
	e := startBench(t, sim.BenchConfig{Boards: 2}, 0)
	ctx := context.Background()
	for line, b := range e.p.Batches() {
		if b.Operator != "" {
			t.Fatalf("line %s's batch starts with operator %q", line, b.Operator)
		}
	}
	if err := e.p.SetOperator("  "); err == nil || e.p.Operator() != "" {
		t.Errorf("an empty name was taken: %v", err)
	}
	if err := e.p.SetOperator(" badge-0042 "); err != nil {
		t.Fatal(err)
	}
	for line, b := range e.p.Batches() {
		got, err := e.led.Batch(ctx, b.ID)
		if b.Operator != "badge-0042" || err != nil || got.Operator != "badge-0042" {
			t.Errorf("line %s: batch %q, in the ledger %q (%v)", line, b.Operator, got.Operator, err)
		}
	}
	if err := e.p.Retry("A1"); err != nil {
		t.Fatal(err)
	}
	if err := e.p.SetDisabled("B1", true); err != nil {
		t.Fatal(err)
	}
	// Another operator takes over: the batches keep the first, the
	// actions name the second.
	if err := e.p.SetOperator("bob"); err != nil {
		t.Fatal(err)
	}
	if e.p.Operator() != "bob" || e.p.Batches()["line1"].Operator != "badge-0042" {
		t.Errorf("operator %q, line1's batch %q", e.p.Operator(), e.p.Batches()["line1"].Operator)
	}
	if err := e.p.EndBatch("line1"); err != nil {
		t.Fatal(err)
	}
	evs, err := e.led.StationEvents(ctx, ledger.EventOperator, 20)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range slices.Backward(evs) {
		var d map[string]string
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.Stage+" "+ev.SlotID+" "+d["operator"])
		if ev.BatchID == 0 {
			t.Errorf("event %q without its batch", ev.Message)
		}
	}
	want := []string{"named  badge-0042", "named  badge-0042", "retry A1 badge-0042", "disable B1 badge-0042", "end batch  bob"}
	if !slices.Equal(got, want) {
		t.Errorf("operator events %q, want %q", got, want)
	}
}
