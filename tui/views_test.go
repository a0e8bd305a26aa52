package tui

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/flashstation/flashstation/ledger"
)

// addUnits records n more finished units on line1's batch (slots C1-C8,
// board SIM<5 digits>), failing every third with write-error.
func addUnits(t *testing.T, f *fixture, n int) {
	t.Helper()
	ctx := context.Background()
	batch := f.m.s.batches()[0]
	for i := range n {
		id, err := f.led.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: fmt.Sprintf("C%d", i%8+1), HWSerial: fmt.Sprintf("SIM%05d", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		state, why := ledger.UnitPass, ""
		if i%3 == 2 {
			state, why = ledger.UnitFail, "write-error"
		}
		if err := f.led.FinishUnit(ctx, id, state, why, ""); err != nil {
			t.Fatal(err)
		}
	}
}

// qaBoards are the boards the QA list shows, in order.
func qaBoards(f *fixture) []string {
	var out []string
	for _, u := range f.m.qa.units {
		out = append(out, u.HWSerial)
	}
	return out
}

// TestQASearchMatchesAnyPart searches through the keys, as the operator
// does: any part of board, serial, slot, reason or batch, any case.
func TestQASearchMatchesAnyPart(t *testing.T) {
	tests := []struct {
		query string
		want  []string // boards, newest unit first
	}{
		{"002", []string{"HW2002", "HW1002", "HW1002"}},                   // middle of a board and a serial
		{"acme-100", []string{"HW1002", "HW1003", "HW1001"}},              // a serial, lower case
		{"a2", []string{"HW1002", "HW1002"}},                              // the slot
		{"write", []string{"HW1002"}},                                     // a reason code
		{"PANIC", []string{"HW2002"}},                                     // a reason, upper case
		{"50%", nil},                                                      // % is no wildcard
		{"HW_", nil},                                                      // _ is no wildcard
		{"2", []string{"HW2003", "HW2002", "HW2001", "HW1002", "HW1002"}}, // batch 2 is line2's
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			f := newFixture(t, 120, 40, slotsMixed())
			f.keys(t, "/")
			for _, r := range tc.query {
				f.keys(t, string(r))
			}
			if got := qaBoards(f); !slices.Equal(got, tc.want) {
				t.Errorf("search %q: %v, want %v", tc.query, got, tc.want)
			}
			if len(tc.want) == 0 && !strings.Contains(f.screen(), "no unit's board, serial, slot, reason or batch contains "+tc.query) {
				t.Errorf("no result is not said:\n%s", f.screen())
			}
		})
	}
}

var qaRange = regexp.MustCompile(`(\d+)-(\d+) of (\d+) units`)

// TestQAScrollAndFocus: in the search box letters type (the footer offers
// no letter) and arrows and pgup/pgdn move; with tab the list takes j/k,
// home/end; the header says which rows are shown.
func TestQAScrollAndFocus(t *testing.T) {
	f := newFixture(t, 80, 24, slotsMixed())
	addUnits(t, f, 40)
	f.keys(t, "/")
	h := f.m.qa.listHeight()
	shown := func() string {
		m := qaRange.FindString(f.screen())
		return m
	}
	footer := func() string {
		rows := strings.Split(f.screen(), "\n")
		return rows[len(rows)-1]
	}
	if len(f.m.qa.units) != 48 || shown() != fmt.Sprintf("1-%d of 48 units", h) {
		t.Fatalf("%d units, header %q:\n%s", len(f.m.qa.units), shown(), f.screen())
	}
	for _, letter := range []string{"k up", "j down", "↑/k", "↓/j", "g ", "G "} {
		if strings.Contains(footer(), letter) {
			t.Errorf("the footer offers %q while k, j, g type: %q", letter, footer())
		}
	}
	for _, want := range []string{"↑ up", "↓ down", "pgup/pgdn page", "esc back"} {
		if !strings.Contains(footer(), want) {
			t.Errorf("the footer lacks %q: %q", want, footer())
		}
	}
	f.keys(t, "k", "j")
	if v := f.m.qa.input.Value(); v != "kj" || f.m.qa.sel != 0 {
		t.Fatalf("k, j in the box: value %q, selected %d", v, f.m.qa.sel)
	}
	f.keys(t, "backspace", "backspace", "pgdown")
	if f.m.qa.sel != h || shown() != fmt.Sprintf("%d-%d of 48 units", h+1, 2*h) {
		t.Errorf("pgdn: selected %d, header %q", f.m.qa.sel, shown())
	}
	f.keys(t, "down", "up", "up")
	if f.m.qa.sel != h-1 {
		t.Errorf("down, up, up: selected %d, want %d", f.m.qa.sel, h-1)
	}
	f.keys(t, "pgup")
	if f.m.qa.sel != 0 || shown() != fmt.Sprintf("1-%d of 48 units", h) {
		t.Errorf("pgup: selected %d, header %q", f.m.qa.sel, shown())
	}
	// The list's own keys after tab.
	f.keys(t, "tab")
	if f.m.qa.Typing() || !strings.Contains(footer(), "↑↓jk move") || !strings.Contains(footer(), "home/end ends") || !strings.Contains(footer(), "tab search") {
		t.Fatalf("tab: typing %v, footer %q", f.m.qa.Typing(), footer())
	}
	f.keys(t, "end")
	if f.m.qa.sel != 47 || shown() != fmt.Sprintf("%d-48 of 48 units", 48-h+1) {
		t.Errorf("end: selected %d, header %q", f.m.qa.sel, shown())
	}
	if !strings.Contains(f.screen(), "HW1001") {
		t.Errorf("the oldest unit is not reachable:\n%s", f.screen())
	}
	f.keys(t, "k", "k")
	if f.m.qa.sel != 45 {
		t.Errorf("k, k: selected %d", f.m.qa.sel)
	}
	f.keys(t, "home", "j")
	if f.m.qa.sel != 1 || shown() != fmt.Sprintf("1-%d of 48 units", h) {
		t.Errorf("home, j: selected %d, header %q", f.m.qa.sel, shown())
	}
	if f.m.qa.input.Value() != "" {
		t.Errorf("list keys typed %q", f.m.qa.input.Value())
	}
	// esc gives the box its focus back, a second esc leaves.
	f.keys(t, "esc")
	if f.m.screen != screenQA || !f.m.qa.Typing() {
		t.Fatalf("esc from the list: screen %d typing %v", f.m.screen, f.m.qa.Typing())
	}
	f.keys(t, "esc")
	if f.m.screen != screenBench {
		t.Errorf("esc from the box: screen %d", f.m.screen)
	}
}

// TestQAEvidenceConsoleScrolls: the evidence's console says which lines it
// shows and j/k, pgup/pgdn, home/end move it.
func TestQAEvidenceConsoleScrolls(t *testing.T) {
	f := newFixture(t, 80, 24, slotsMixed())
	f.keys(t, "/", "A", "C", "M", "E", "-", "1", "0", "0", "1", "enter")
	var console []string
	for i := range 60 {
		console = append(console, fmt.Sprintf("console line %02d", i+1))
	}
	f.m.qa.console = console
	ch := f.m.qa.consoleHeight()
	if !strings.Contains(f.screen(), fmt.Sprintf("lines %d-60 of 60", 60-ch+1)) || !strings.Contains(f.screen(), "console line 60") {
		t.Fatalf("newest lines not shown (%d rows):\n%s", ch, f.screen())
	}
	f.keys(t, "home")
	if !strings.Contains(f.screen(), fmt.Sprintf("lines 1-%d of 60 - end to follow", ch)) || !strings.Contains(f.screen(), "console line 01") {
		t.Errorf("home:\n%s", f.screen())
	}
	f.keys(t, "j")
	if !strings.Contains(f.screen(), fmt.Sprintf("lines 2-%d of 60", ch+1)) {
		t.Errorf("j:\n%s", f.screen())
	}
	f.keys(t, "end")
	if !strings.Contains(f.screen(), fmt.Sprintf("lines %d-60 of 60", 60-ch+1)) || strings.Contains(f.screen(), "end to follow") {
		t.Errorf("end:\n%s", f.screen())
	}
	// Every timeline event is reachable too: tab, then the same keys.
	var evs []ledger.Event
	for i := range 30 {
		evs = append(evs, ledger.Event{At: t0.Add(time.Duration(i) * time.Second), Kind: "stage", Stage: fmt.Sprintf("stage-%02d", i+1)})
	}
	f.m.qa.ev.Events = evs
	rows, ch := f.m.qa.timelineRows(), f.m.qa.consoleHeight() // the timeline takes more room now
	if s := f.screen(); !strings.Contains(s, fmt.Sprintf("events %d-30 of 30", 30-rows+1)) || !strings.Contains(s, "stage-30") || strings.Contains(s, "stage-01") {
		t.Fatalf("newest events not shown (%d rows):\n%s", rows, s)
	}
	f.keys(t, "tab", "home")
	if s := f.screen(); !strings.Contains(s, "▸ TIMELINE") || !strings.Contains(s, fmt.Sprintf("events 1-%d of 30", rows)) || !strings.Contains(s, "stage-01") {
		t.Errorf("tab, home: the timeline's first events:\n%s", s)
	}
	if !strings.Contains(f.screen(), fmt.Sprintf("lines %d-60 of 60", 60-ch+1)) {
		t.Errorf("the console moved with the timeline:\n%s", f.screen())
	}
	f.keys(t, "pgdown", "end", "tab", "k")
	if s := f.screen(); !strings.Contains(s, fmt.Sprintf("events %d-30 of 30", 30-rows+1)) || !strings.Contains(s, fmt.Sprintf("lines %d-59 of 60", 60-ch)) {
		t.Errorf("end on the timeline, tab, k on the console:\n%s", s)
	}
}

// batchKeys sends keys to the batch view.
func batchKeys(f *fixture, keys ...string) {
	for _, k := range keys {
		f.m.batch, _ = f.m.batch.Update(keyMsg(k))
	}
}

var batchRange = regexp.MustCompile(`rows (\d+)-(\d+) of (\d+)`)

// TestBatchViewScrolls: nothing is cut ("… N more" is gone), every row is
// reachable by scrolling, the view says where it is, and at 200x60 it
// uses its height.
func TestBatchViewScrolls(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz[0], sz[1]), func(t *testing.T) {
			f := newFixture(t, sz[0], sz[1], slotsMixed())
			addUnits(t, f, 40)
			f.keys(t, "b")
			all := f.m.batch.report()
			bodyH := sz[1] - headerHeight - footerHeight
			if len(all) <= bodyH {
				t.Fatalf("%d rows fit in %d: the test needs more", len(all), bodyH)
			}
			s := f.screen()
			if strings.Contains(s, "more") && regexp.MustCompile(`… \d+ more`).MatchString(s) {
				t.Errorf("rows cut:\n%s", s)
			}
			m := batchRange.FindStringSubmatch(s)
			if m == nil || m[1] != "1" || m[2] != fmt.Sprint(bodyH-1) || m[3] != fmt.Sprint(len(all)) {
				t.Fatalf("position %q, want rows 1-%d of %d:\n%s", m, bodyH-1, len(all), s)
			}
			units := strings.Count(s, "SIM0")
			if want := max(0, bodyH-1-slices.IndexFunc(all, func(l string) bool { return strings.Contains(l, "SIM0") })); units != want {
				t.Errorf("%d recent units on screen, want the %d rows left", units, want)
			}
			// Down to the end, a page at a time: every row is seen once.
			seen := map[string]bool{}
			for range len(all) {
				for _, l := range strings.Split(f.screen(), "\n") {
					seen[strings.TrimRight(l, " ")] = true
				}
				batchKeys(f, "pgdown")
			}
			for _, l := range all {
				if !seen[strings.TrimRight(ansi.Strip(l), " ")] {
					t.Errorf("row never shown: %q", l)
				}
			}
			if m := batchRange.FindStringSubmatch(f.screen()); m == nil || m[2] != m[3] {
				t.Errorf("pgdn to the end: %q", m)
			}
			batchKeys(f, "home", "j", "j", "k")
			if m := batchRange.FindStringSubmatch(f.screen()); m == nil || m[1] != "2" {
				t.Errorf("home, j, j, k: %q", m)
			}
			batchKeys(f, "end")
			if m := batchRange.FindStringSubmatch(f.screen()); m == nil || m[2] != m[3] || !strings.Contains(f.screen(), "↑") {
				t.Errorf("end: %q", m)
			}
			batchKeys(f, "down", "pgdown")
			if m := batchRange.FindStringSubmatch(f.screen()); m == nil || m[2] != m[3] {
				t.Errorf("past the end: %q", m)
			}
		})
	}
}

// TestBatchRecentByFinish: recent units are the newest finished first,
// whatever their ids.
func TestBatchRecentByFinish(t *testing.T) {
	f := newFixture(t, 200, 60, slotsMixed())
	ctx := context.Background()
	batch := f.m.s.batches()[0]
	// X starts before Y, Y ends first: by id Y would be first.
	x, err := f.led.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "A5", HWSerial: "HWX"})
	if err != nil {
		t.Fatal(err)
	}
	y, err := f.led.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "A6", HWSerial: "HWY"})
	if err != nil {
		t.Fatal(err)
	}
	running, err := f.led.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "A7", HWSerial: "HWR"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{y, x} {
		if err := f.led.FinishUnit(ctx, id, ledger.UnitPass, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	f.keys(t, "b")
	var got []string
	var last time.Time
	for i, u := range f.m.batch.last.recent {
		got = append(got, u.HWSerial)
		if i > 0 && !u.FinishedAt.IsZero() && u.FinishedAt.After(last) {
			t.Errorf("unit %d finished %v, after the one above it (%v)", u.ID, u.FinishedAt, last)
		}
		last = u.FinishedAt
	}
	want := []string{"HWX", "HWY", "HW2003", "HW2002", "HW2001", "HW1004", "HW1002", "HW1003", "HW1002", "HW1001", "HWR"}
	if !slices.Equal(got, want) {
		t.Errorf("recent %v, want %v (running unit %d last)", got, want, running)
	}
	s := f.screen()
	if ix, iy := strings.Index(s, "HWX"), strings.Index(s, "HWY"); ix < 0 || iy < 0 || ix > iy {
		t.Errorf("HWX (finished last) not above HWY:\n%s", s)
	}
}
