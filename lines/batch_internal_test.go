package lines

import (
	"context"
	"testing"

	"github.com/flashstation/flashstation/ledger"
)

func testLine(planned int) *lineRun {
	return &lineRun{cfg: &Line{ID: "line1"}, batch: ledger.Batch{ID: 1, Planned: planned}, run: newBatchRun(context.Background())}
}

// TestBatchPlaces: a batch admits at most its planned boards; a retried
// board keeps its place even when its unit cannot be recorded; a place
// taken for a new board is freed when its unit cannot be recorded.
func TestBatchPlaces(t *testing.T) {
	lr := testLine(2)
	admit := func(slot, hw string, want bool) string {
		t.Helper()
		place, ok, why := lr.admit(slot, hw)
		if ok != want {
			t.Fatalf("admit %s in %s = %v (%s), want %v", hw, slot, ok, why, want)
		}
		return place
	}
	p := admit("A1", "A", true)
	lr.started(p, "A", 1)
	lr.run.done["A"] = true // A failed
	// A retried: it holds its place; its unit cannot be recorded.
	if p = admit("A1", "A", true); p != "" {
		t.Fatalf("a retried board took a new place %q", p)
	}
	lr.started(p, "A", 0)
	if !lr.run.taken["A"] {
		t.Fatal("a failed retry freed the board's place")
	}
	// B takes the last place; C finds none.
	p = admit("A2", "B", true)
	admit("A3", "C", false)
	// B's unit cannot be recorded: its place is free again, and C gets it.
	lr.started(p, "B", 0)
	admit("A3", "C", true)
	admit("A2", "B", false)
	// A board without a serial holds its slot's place, then its unit's.
	lr = testLine(1)
	p = admit("A1", "", true)
	admit("A2", "", false)
	lr.started(p, "", 7)
	if !lr.run.taken["unit:7"] || lr.run.taken["slot:A1"] {
		t.Errorf("places %v", lr.run.taken)
	}
}

// TestResumeLeavesAbortedBoardsOut: a restarted station counts the boards
// done with its batch; a board that was only aborted holds no place, so
// the batch can still be completed by another.
func TestResumeLeavesAbortedBoardsOut(t *testing.T) {
	lr := testLine(2)
	lr.run.resume([]ledger.Unit{
		{ID: 1, HWSerial: "A", State: ledger.UnitPass},
		{ID: 2, HWSerial: "B", State: ledger.UnitAborted},
		{ID: 3, State: ledger.UnitAborted},
	})
	if len(lr.run.taken) != 1 || len(lr.run.done) != 1 {
		t.Fatalf("taken %v done %v", lr.run.taken, lr.run.done)
	}
	if _, ok, why := lr.admit("A2", "C"); !ok {
		t.Errorf("a new board refused after the restart: %s", why)
	}
}
