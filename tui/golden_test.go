package tui

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/exp/golden"

	"github.com/flashstation/flashstation/lines"
)

var sizes = [][2]int{{80, 24}, {120, 40}, {200, 60}}

// detailFixture is the mixed bench where A1 passed (unit 1, whose serial
// assertion is in the ledger) and B1 failed with a kernel panic, both with
// their whole event history.
func detailFixture(t testing.TB, w, h int) *fixture {
	slots := slotsMixed()
	a1 := lines.SlotView{ID: "A1", Line: "line1", State: lines.StatePass, Stage: "registered", HWSerial: "HW1001", Serial: "ACME-1001",
		Unit: 1, Attempt: 1, StartedAt: t0.Add(-40 * time.Second), LastLine: "Reached target Multi-User System."}
	b1 := lines.SlotView{ID: "B1", Line: "line2", State: lines.StateFail, Stage: "kernel", HWSerial: "HW2002", Unit: 7, Attempt: 1,
		StartedAt: t0.Add(-30 * time.Second), Reason: "kernel-panic",
		Detail: "console: Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(179,2)"}
	slots[0], slots[1] = a1, b1
	f := newFixture(t, w, h, slots)
	evs := append(unitEvents("A1", "line1", 1, "HW1001", a1.StartedAt, ""), unitEvents("B1", "line2", 7, "HW2002", b1.StartedAt, "kernel-panic")...)
	f.send(t, eventsMsg{events: evs, closed: true})
	return f
}

// TestGoldenViews renders every view at three terminal sizes, without
// styles (the golden files are what an operator reads).
func TestGoldenViews(t *testing.T) {
	views := []struct {
		name  string
		setup func(t *testing.T, w, h int) *fixture
	}{
		{"idle", func(t *testing.T, w, h int) *fixture { return newFixture(t, w, h, slotsIdle(8)) }},
		{"flashing", func(t *testing.T, w, h int) *fixture { return newFixture(t, w, h, slotsFlashing(8)) }},
		{"mixed", func(t *testing.T, w, h int) *fixture {
			f := newFixture(t, w, h, slotsMixed())
			f.send(t, f.m.refreshStats()())
			return f
		}},
		{"detail-pass", func(t *testing.T, w, h int) *fixture {
			f := detailFixture(t, w, h)
			f.keys(t, "enter")
			return f
		}},
		{"detail-fail", func(t *testing.T, w, h int) *fixture {
			f := detailFixture(t, w, h)
			f.keys(t, "right", "enter")
			return f
		}},
		{"batch", func(t *testing.T, w, h int) *fixture {
			f := newFixture(t, w, h, slotsMixed())
			f.keys(t, "b")
			return f
		}},
		{"qa-search", func(t *testing.T, w, h int) *fixture {
			f := newFixture(t, w, h, slotsMixed())
			f.keys(t, "/", "H", "W", "1")
			return f
		}},
		{"qa-evidence", func(t *testing.T, w, h int) *fixture {
			f := newFixture(t, w, h, slotsMixed())
			f.keys(t, "/", "A", "C", "M", "E", "-", "1", "0", "0", "1", "enter")
			return f
		}},
		{"help", func(t *testing.T, w, h int) *fixture {
			f := newFixture(t, w, h, slotsMixed())
			f.keys(t, "?")
			return f
		}},
		{"operator-prompt", func(t *testing.T, w, h int) *fixture {
			f := newFixtureAs(t, w, h, slotsFlashing(8), "")
			f.keys(t, "enter")
			return f
		}},
		{"retry-pass", func(t *testing.T, w, h int) *fixture {
			f := newFixture(t, w, h, slotsMixed())
			f.keys(t, "r")
			return f
		}},
		{"quit-guard", func(t *testing.T, w, h int) *fixture {
			f := newFixture(t, w, h, slotsFlashing(8))
			f.keys(t, "q")
			return f
		}},
	}
	for _, v := range views {
		for _, sz := range sizes {
			t.Run(fmt.Sprintf("%s/%dx%d", v.name, sz[0], sz[1]), func(t *testing.T) {
				t.Parallel()
				f := v.setup(t, sz[0], sz[1])
				out := strings.ReplaceAll(f.screen(), f.dir, "$DIR")
				checkScreen(t, out, sz[0], sz[1])
				golden.RequireEqual(t, out)
			})
		}
	}
}

// checkScreen checks what every screen must be: exactly the terminal's
// size, no line wider than it.
func checkScreen(t *testing.T, out string, w, h int) {
	t.Helper()
	rows := strings.Split(out, "\n")
	if len(rows) != h {
		t.Errorf("%d rows, want %d", len(rows), h)
	}
	for i, r := range rows {
		if n := len([]rune(r)); n != w {
			t.Errorf("row %d is %d wide, want %d: %q", i, n, w, r)
		}
	}
}
