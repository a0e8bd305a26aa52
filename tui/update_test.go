package tui

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/flashstation/flashstation/lines"
)

// isQuit reports whether a command quits the program.
func isQuit(cmd tea.Cmd) bool {
	if cmd == nil {
		return false
	}
	_, ok := cmd().(tea.QuitMsg)
	return ok
}

func TestMoveKeys(t *testing.T) {
	// 14 slots at 80x24: 4 per row (A1 B1 A2 B2 / A3 B3 A4 B4 / A5 B5 A6 B6 / A7 B7).
	tests := []struct {
		keys []string
		want string
	}{
		{nil, "A1"},
		{[]string{"right"}, "B1"},
		{[]string{"l", "l"}, "A2"},
		{[]string{"l", "h"}, "A1"},
		{[]string{"left"}, "A1"}, // stays at the first
		{[]string{"down"}, "A3"},
		{[]string{"j", "j"}, "A5"},
		{[]string{"j", "k"}, "A1"},
		{[]string{"up"}, "A1"},
		{[]string{"j", "j", "j", "j", "j"}, "A7"},
		{[]string{"l", "l", "j", "j", "j"}, "B7"}, // from A2's column to the shorter last row
		{[]string{"l", "l", "j", "j", "j", "j"}, "B7"},
		{[]string{"pgdown"}, "B7"},
		{[]string{"pgdown", "pgup"}, "B1"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.keys, ","), func(t *testing.T) {
			f := newFixture(t, 80, 24, slotsFlashing(14))
			f.keys(t, tt.keys...)
			if got := f.m.bench.Selected(); got != tt.want {
				t.Errorf("selected %s, want %s", got, tt.want)
			}
		})
	}
}

// TestEverySlotShows: cards shrink before any slot leaves the screen:
// every slot shows, with no scroll note, up to 16 slots at 80x24 and 64 at
// 200x60.
func TestEverySlotShows(t *testing.T) {
	for _, tt := range []struct{ n, w, h int }{{16, 80, 24}, {16, 120, 40}, {16, 200, 60}, {64, 200, 60}, {8, 80, 24}, {32, 120, 40}} {
		t.Run(fmt.Sprintf("%d slots at %dx%d", tt.n, tt.w, tt.h), func(t *testing.T) {
			f := newFixture(t, tt.w, tt.h, slotsFlashing(tt.n))
			s := f.screen()
			if strings.Contains(s, "rows ") {
				t.Errorf("a scroll note:\n%s", s)
			}
			for _, v := range slotsFlashing(tt.n) {
				if !regexp.MustCompile(`(^|[\s▶])` + v.ID + `\s`).MatchString(s) {
					t.Errorf("slot %s is not on screen:\n%s", v.ID, s)
					break
				}
			}
			if rows := strings.Count(s, "\n") + 1; rows != tt.h {
				t.Errorf("%d rows drawn, want %d", rows, tt.h)
			}
		})
	}
}

// TestOffScreenCounts: past what fits, the footer counts the verdicts off
// screen, and n jumps to the next FAIL, then to a PASS.
func TestOffScreenCounts(t *testing.T) {
	slots := slotsFlashing(64)
	slots[60].State, slots[60].Reason = lines.StateFail, "kernel-panic"
	slots[62].State, slots[62].Reason = lines.StateFail, "boot-loop"
	slots[3].State, slots[3].Serial = lines.StatePass, "S-4"
	f := newFixture(t, 80, 24, slots)
	s := f.screen()
	if !strings.Contains(s, "2 FAIL ↓") {
		t.Fatalf("no off-screen FAIL count:\n%s", s)
	}
	f.keys(t, "n")
	if got := f.m.bench.Selected(); got != slots[60].ID {
		t.Errorf("n selected %s, want %s (the first FAIL)", got, slots[60].ID)
	}
	if s := f.screen(); !strings.Contains(s, "▶"+slots[60].ID) {
		t.Errorf("the FAIL it jumped to is not on screen:\n%s", s)
	}
	f.keys(t, "n")
	if got := f.m.bench.Selected(); got != slots[62].ID {
		t.Errorf("n again selected %s, want %s", got, slots[62].ID)
	}
	if s := f.screen(); !strings.Contains(s, "1 PASS ↑") {
		t.Errorf("no off-screen PASS count above:\n%s", s)
	}
}

func TestDetailKeys(t *testing.T) {
	f := detailFixture(t, 80, 24)
	f.keys(t, "enter")
	if f.m.screen != screenDetail || f.m.detail.Slot() != "A1" {
		t.Fatalf("enter: screen %d slot %s", f.m.screen, f.m.detail.Slot())
	}
	if s := f.screen(); !strings.Contains(s, "serial ACME-1001") || !strings.Contains(s, "device key Cj9aXkQ1Zr0x") {
		t.Errorf("assertion summary missing:\n%s", s)
	}
	// A long console: scroll back a page, to the top, back to the tail.
	var evs []lines.Event
	for i := range 200 {
		evs = append(evs, lines.Event{At: t0, Kind: lines.EventLine, Slot: "A1", Unit: 1, Text: "line " + strconv.Itoa(i)})
	}
	f.send(t, eventsMsg{events: evs, closed: true})
	if s := f.screen(); !strings.Contains(s, "line 199") || !strings.Contains(s, "following") {
		t.Fatalf("tail not followed:\n%s", s)
	}
	f.keys(t, "pgup")
	if s := f.screen(); strings.Contains(s, "line 199") || !strings.Contains(s, "lines up - end to follow") {
		t.Errorf("pgup:\n%s", s)
	}
	f.keys(t, "home")
	if s := f.screen(); !strings.Contains(s, "U-Boot 2024.01") {
		t.Errorf("home shows the first lines:\n%s", s)
	}
	f.keys(t, "pgdown")
	if f.m.detail.back == 0 {
		t.Error("pgdown from the top reached the tail at once")
	}
	f.keys(t, "end")
	if f.m.detail.back != 0 || !strings.Contains(f.screen(), "line 199") {
		t.Errorf("end: back %d", f.m.detail.back)
	}
	f.keys(t, "G", "pgup", "pgdown")
	if f.m.detail.back != 0 {
		t.Errorf("pgup then pgdown: back %d", f.m.detail.back)
	}
	// Next and previous slot.
	f.keys(t, "right")
	if f.m.detail.Slot() != "B1" || !strings.Contains(f.screen(), "FAILED: kernel-panic") {
		t.Errorf("right: slot %s\n%s", f.m.detail.Slot(), f.screen())
	}
	f.keys(t, "h", "h")
	if f.m.detail.Slot() != "A1" {
		t.Errorf("left at the first slot: %s", f.m.detail.Slot())
	}
	f.keys(t, "l", "esc")
	if f.m.screen != screenBench || f.m.bench.Selected() != "B1" {
		t.Errorf("esc: screen %d, selected %s", f.m.screen, f.m.bench.Selected())
	}
}

func TestRetryAndDisableKeys(t *testing.T) {
	f := newFixture(t, 120, 40, slotsMixed())
	f.keys(t, "r", "y") // A1 passed: asked, then retried (the board is rewritten)
	f.keys(t, "l", "r") // B1 failed: at once
	f.keys(t, "l", "r") // A2 is booting: refused with a message
	if !strings.Contains(f.screen(), "A2 is BOOTING: retry is for a slot with a verdict") {
		t.Errorf("retry of a booting slot:\n%s", f.screen())
	}
	// 4 columns: A1 B1 A2 B2 / A3 B3 A4 B4 / A5 ...
	f.keys(t, "l", "l", "l", "d") // B3, idle: disable
	f.keys(t, "l", "d")           // A4, disabled: enable
	f.keys(t, "h", "h", "h", "h", "h", "h", "enter", "r", "y", "d", "y", "esc")
	want := []string{"retry A1", "retry B1", "disable B3", "enable A4", "retry A1", "disable A1"}
	if got := f.st.Actions(); !slices.Equal(got, want) {
		t.Errorf("actions %q, want %q", got, want)
	}
	if !strings.Contains(f.screen(), "A1 out of service") {
		t.Errorf("status after disabling:\n%s", f.screen())
	}
	// Disabling a working slot says when it takes effect.
	f.keys(t, "j", "j", "d", "y") // A5 is flashing
	if !strings.Contains(f.screen(), "A5 will be out of service when its board's unit ends") {
		t.Errorf("disable while flashing:\n%s", f.screen())
	}
}

// TestRiskyKeysAsk: r on a PASS and d on a board in work or a PASS ask
// first, y does it and any other key cancels; FAIL, idle and disabled
// slots act at once.
func TestRiskyKeysAsk(t *testing.T) {
	// slotsMixed at 120 columns (4 a row): A1 pass ACME-1001, B1 fail,
	// A2 booting, B2 registering, A3 fail, B3 idle, A4 disabled, B4 pass
	// ACME-3007 (duplicate), A5 verifying, B5 starting, A6 flashing.
	tests := []struct {
		name    string
		keys    []string
		prompt  string // the footer after the keys but the last
		actions []string
		status  string
	}{
		{"retry pass yes", []string{"r", "y"}, "retry A1? its board passed (serial ACME-1001) - y/n", []string{"retry A1"}, "retrying A1"},
		{"retry pass Y", []string{"r", "Y"}, "retry A1? its board passed (serial ACME-1001) - y/n", []string{"retry A1"}, "retrying A1"},
		{"retry pass no", []string{"r", "n"}, "retry A1? its board passed", nil, "A1 not retried"},
		{"retry pass other key", []string{"r", "r"}, "retry A1? its board passed", nil, "A1 not retried"},
		{"retry pass esc", []string{"r", "esc"}, "retry A1? its board passed", nil, "A1 not retried"},
		{"retry second pass", []string{"j", "l", "l", "l", "r", "y"}, "retry B4? its board passed (serial ACME-3007) - y/n", []string{"retry B4"}, "retrying B4"},
		{"retry fail at once", []string{"l", "r"}, "", []string{"retry B1"}, "retrying B1"},
		{"retry fail in detail", []string{"l", "enter", "r"}, "", []string{"retry B1"}, "retrying B1"},
		{"retry pass in detail", []string{"enter", "r", "y"}, "retry A1? its board passed", []string{"retry A1"}, "retrying A1"},
		{"disable pass yes", []string{"d", "y"}, "disable A1? its PASS (serial ACME-1001) leaves the card - y/n",
			[]string{"disable A1"}, "A1 out of service"},
		{"disable pass no", []string{"d", "n"}, "disable A1? its PASS", nil, "A1 not disabled"},
		{"disable booting", []string{"l", "l", "d", "y"}, "disable A2 (booting)? its unit finishes, then the slot takes no board - y/n",
			[]string{"disable A2"}, "A2 will be out of service when its board's unit ends"},
		{"disable registering no", []string{"l", "l", "l", "d", "x"}, "disable B2 (registering)? its unit finishes", nil, "B2 not disabled"},
		{"disable flashing", []string{"j", "j", "d", "y"}, "disable A5 (flashing)?", []string{"disable A5"}, "A5 will be out of service"},
		{"disable starting", []string{"j", "j", "l", "d", "y"}, "disable B5 (starting)?", []string{"disable B5"}, "B5 will be out of service"},
		{"disable fail asks", []string{"l", "d", "y"}, "disable B1? its FAIL leaves the card", []string{"disable B1"}, "B1 out of service"},
		{"disable fail, n", []string{"l", "d", "n"}, "disable B1? its FAIL leaves the card", nil, "B1 not disabled"},
		{"disable idle at once", []string{"j", "l", "d"}, "", []string{"disable B3"}, "B3 out of service"},
		{"enable disabled at once", []string{"j", "l", "l", "d"}, "", []string{"enable A4"}, "A4 back in service"},
		{"disable in detail", []string{"l", "l", "enter", "d", "y"}, "disable A2 (booting)?", []string{"disable A2"}, "A2 will be out of service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 120, 40, slotsMixed())
			if n := len(tt.keys); tt.prompt != "" {
				f.keys(t, tt.keys[:n-1]...)
				if s := f.screen(); !f.m.Asking() || !strings.Contains(s, tt.prompt) {
					t.Fatalf("not asked %q:\n%s", tt.prompt, s)
				}
				if got := f.st.Actions(); len(got) != 0 {
					t.Fatalf("acted before the answer: %q", got)
				}
				f.keys(t, tt.keys[n-1])
			} else {
				f.keys(t, tt.keys...)
			}
			if f.m.Asking() {
				t.Error("still asking")
			}
			if got := f.st.Actions(); !slices.Equal(got, tt.actions) {
				t.Errorf("actions %q, want %q", got, tt.actions)
			}
			if !strings.Contains(f.m.status, tt.status) {
				t.Errorf("status %q, want %q", f.m.status, tt.status)
			}
		})
	}
}

// TestEndBatchKey: E asks before it ends the selected slot's line's
// batch, says how many boards it stops, and only y ends it.
func TestEndBatchKey(t *testing.T) {
	f := newFixture(t, 120, 40, slotsMixed())
	f.keys(t, "E") // A1: line1
	if s := f.screen(); !strings.Contains(s, "end the batch of line line1 (") || !strings.Contains(s, "in work will be stopped)? y/n") {
		t.Fatalf("E:\n%s", s)
	}
	f.keys(t, "n")
	if len(f.st.Actions()) != 0 || !strings.Contains(f.screen(), "batch of line1 not ended") {
		t.Fatalf("n ended the batch: %q\n%s", f.st.Actions(), f.screen())
	}
	f.keys(t, "E", "y")
	if got := f.st.Actions(); !slices.Equal(got, []string{"end batch line1"}) {
		t.Errorf("actions %q", got)
	}
}

func TestViewKeys(t *testing.T) {
	f := newFixture(t, 120, 40, slotsMixed())
	f.keys(t, "b")
	if f.m.screen != screenBatch || !strings.Contains(f.screen(), "FAILURE PARETO") || !strings.Contains(f.screen(), "stage-timeout") {
		t.Fatalf("b:\n%s", f.screen())
	}
	f.keys(t, "?")
	if f.m.screen != screenHelp || !strings.Contains(f.screen(), "SLOT STATES") {
		t.Fatalf("?:\n%s", f.screen())
	}
	f.keys(t, "?")
	if f.m.screen != screenBatch {
		t.Errorf("? again returns to the batch view: %d", f.m.screen)
	}
	f.keys(t, "?", "esc")
	if f.m.screen != screenBatch {
		t.Errorf("esc from help returns to the batch view: %d", f.m.screen)
	}
	f.keys(t, "esc")
	if f.m.screen != screenBench {
		t.Errorf("esc from batch: %d", f.m.screen)
	}
	// QA: keys type into the search, q and b included.
	f.keys(t, "/", "H", "W", "1", "0", "0", "2")
	if f.m.screen != screenQA || len(f.m.qa.units) != 2 {
		t.Fatalf("search HW1002: %d units\n%s", len(f.m.qa.units), f.screen())
	}
	f.keys(t, "backspace", "backspace", "backspace", "backspace")
	if len(f.m.qa.units) != 8 || f.m.qa.input.Value() != "HW" {
		t.Fatalf("search HW after backspaces: %d units", len(f.m.qa.units))
	}
	f.keys(t, "q", "b")
	if f.m.screen != screenQA || f.m.qa.input.Value() != "HWqb" || f.m.Asking() {
		t.Errorf("q and b while typing: screen %d input %q", f.m.screen, f.m.qa.input.Value())
	}
	f.keys(t, "backspace", "backspace", "down", "down")
	if f.m.qa.sel != 2 {
		t.Errorf("down twice: selected %d", f.m.qa.sel)
	}
	f.keys(t, "up", "enter")
	if !f.m.qa.open || f.m.qa.ev == nil || f.m.qa.ev.Unit.ID != f.m.qa.units[1].ID {
		t.Fatalf("enter opens the evidence:\n%s", f.screen())
	}
	f.keys(t, "esc")
	if f.m.qa.open || !f.m.qa.Typing() {
		t.Error("esc from the evidence returns to the search")
	}
	f.keys(t, "esc")
	if f.m.screen != screenBench {
		t.Errorf("esc from the search: %d", f.m.screen)
	}
}

// TestQAExport writes a unit's bundle from the evidence view.
func TestQAExport(t *testing.T) {
	f := newFixture(t, 120, 40, slotsMixed())
	f.m.c.ExportDir = filepath.Join(f.dir, "exports")
	f.keys(t, "/", "A", "C", "M", "E", "-", "1", "0", "0", "1", "enter")
	if s := f.screen(); !strings.Contains(s, "Ubuntu Core 24 on 192.168.7.2") || !strings.Contains(s, "serial assertion: serial ACME-1001") {
		t.Fatalf("evidence:\n%s", s)
	}
	f.keys(t, "e")
	path := filepath.Join(f.dir, "exports", "ACME-1001-unit1.tar.gz")
	if !strings.Contains(f.screen(), "bundle written to "+path) {
		t.Errorf("export status:\n%s", f.screen())
	}
	names := tarNames(t, path)
	for _, n := range []string{"unit.json", "serial.assertion", "console.log", "console.raw", "flash.json"} {
		if !slices.Contains(names, n) {
			t.Errorf("bundle lacks %s: %v", n, names)
		}
	}
	// An export that cannot be written says why.
	f.m.c.ExportDir = "/proc/no-such-dir"
	f.keys(t, "e")
	if !strings.Contains(f.screen(), "export failed") {
		t.Errorf("failed export:\n%s", f.screen())
	}
}

func tarNames(t *testing.T, path string) []string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	gz, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

func TestQuitGuard(t *testing.T) {
	t.Run("nothing working quits at once", func(t *testing.T) {
		f := newFixture(t, 80, 24, slotsIdle(4))
		_, cmd := f.m.Update(keyMsg("q"))
		if !isQuit(cmd) {
			t.Error("q did not quit")
		}
	})
	t.Run("asks while flashing", func(t *testing.T) {
		f := newFixture(t, 80, 24, slotsFlashing(3))
		_, cmd := f.m.Update(keyMsg("q"))
		if isQuit(cmd) || !f.m.Asking() || !strings.Contains(f.screen(), "3 slots still flashing - quit? y/n") {
			t.Fatalf("q while flashing:\n%s", f.screen())
		}
		_, cmd = f.m.Update(keyMsg("n"))
		if isQuit(cmd) || f.m.Asking() || !strings.Contains(f.screen(), "not quitting") {
			t.Errorf("n did not return:\n%s", f.screen())
		}
		_, cmd = f.m.Update(keyMsg("ctrl+c"))
		if isQuit(cmd) || !f.m.Asking() {
			t.Error("ctrl+c did not ask")
		}
		_, cmd = f.m.Update(keyMsg("y"))
		if !isQuit(cmd) {
			t.Error("y did not quit")
		}
	})
	t.Run("any other key returns", func(t *testing.T) {
		f := newFixture(t, 80, 24, slotsFlashing(2))
		f.keys(t, "q", "enter")
		if f.m.Asking() || f.m.screen != screenBench {
			t.Error("enter after q did more than dismiss the question")
		}
	})
	t.Run("says what is running", func(t *testing.T) {
		f := newFixture(t, 80, 24, slotsMixed())
		f.keys(t, "q")
		if !strings.Contains(f.screen(), "7 slots still flashing, 1 booting, 1 registering, 1 starting - quit? y/n") {
			t.Errorf("mixed:\n%s", f.screen())
		}
	})
}

// TestEvents: events update the cards, the console ring and the timeline;
// the reader gathers what arrives at once into one message.
func TestEvents(t *testing.T) {
	f := newFixture(t, 120, 40, slotsIdle(2))
	evs := unitEvents("A1", "line1", 42, "HW9", t0.Add(-20*time.Second), "kernel-panic")
	ch := make(chan lines.Event, len(evs))
	for _, e := range evs {
		ch <- e
	}
	close(ch)
	msg := waitEvents(ch)().(eventsMsg)
	if len(msg.events) != len(evs) || !msg.closed {
		t.Fatalf("one message of %d events (closed %v), want %d", len(msg.events), msg.closed, len(evs))
	}
	f.st.Set(lines.SlotView{ID: "A1", Line: "line1", State: lines.StateFail, HWSerial: "HW9", Unit: 42, Reason: "kernel-panic", StartedAt: t0.Add(-20 * time.Second)})
	f.send(t, msg)
	d := f.m.s.slot("A1")
	if d.Unit != 42 || len(d.Console) != 6 || d.Flash == nil || d.Last == nil || d.Last.Reason != "kernel-panic" {
		t.Fatalf("slot data %+v", d)
	}
	var names []string
	for _, m := range d.Timeline {
		names = append(names, m.Name)
	}
	if want := []string{"present", "flashing", "booting", "bootloader", "kernel", "fail"}; !slices.Equal(names, want) {
		t.Errorf("timeline %v, want %v", names, want)
	}
	if s := f.screen(); !regexp.MustCompile(`✘ (F A I L|FAIL) ✘`).MatchString(s) || !strings.Contains(s, "kernel-panic") || !strings.Contains(s, "→ retry (r)") {
		t.Errorf("card:\n%s", s)
	}
	// A new unit on the slot starts a new console and timeline.
	f.send(t, eventsMsg{events: []lines.Event{{At: t0, Kind: lines.EventState, Slot: "A1", Unit: 43, State: lines.StatePresent}}})
	if d := f.m.s.slot("A1"); d.Unit != 43 || len(d.Console) != 0 || len(d.Timeline) != 1 || d.Last == nil {
		t.Errorf("new unit: %+v", d)
	}
	// The console ring keeps the newest lines.
	var many []lines.Event
	for i := range consoleKeep + 10 {
		many = append(many, lines.Event{Kind: lines.EventLine, Slot: "A1", Unit: 43, Text: "l" + strconv.Itoa(i)})
	}
	f.send(t, eventsMsg{events: many})
	if d := f.m.s.slot("A1"); len(d.Console) > consoleKeep || d.Console[len(d.Console)-1] != "l"+strconv.Itoa(consoleKeep+9) {
		t.Errorf("ring: %d lines, last %q", len(d.Console), d.Console[len(d.Console)-1])
	}
	// A notice shows in the footer; an event of an unknown slot is ignored.
	f.send(t, eventsMsg{events: []lines.Event{{At: t0, Kind: lines.EventNotice, Text: "the vault of line line1 does not answer"},
		{At: t0, Kind: lines.EventLine, Slot: "Z9", Text: "?"}}})
	if !strings.Contains(f.screen(), "the vault of line line1 does not answer") {
		t.Errorf("notice:\n%s", f.screen())
	}
}

// TestHealthInHeader: a vault that does not answer and a proxy refusing
// answers are shown.
func TestHealthInHeader(t *testing.T) {
	f := newFixture(t, 200, 60, slotsIdle(2))
	h := f.st.Health()
	h[0].VaultOK, h[0].VaultError = false, "connection refused"
	h[0].ProxyStats.Unavailable = 2
	f.st.SetHealth(h)
	f.send(t, tickMsg(t0))
	s := f.screen()
	if !strings.Contains(s, "vault ✘ DOWN") || !strings.Contains(s, "⚠ 2 unavailable 0 rejected") {
		t.Errorf("header:\n%s", s)
	}
	// Done overtakes A1's last events: the card still shows its verdict.
	f.st.Set(lines.SlotView{ID: "A1", Line: "line1", State: lines.StatePass, Unit: 1, HWSerial: "HW1", Serial: "S1", StartedAt: t0})
	f.send(t, doneMsg{})
	if s := f.screen(); !strings.Contains(s, "BATCH COMPLETE") || !regexp.MustCompile(`A1\s+✔ (P A S S|PASS) ✔`).MatchString(s) || f.m.Working() != 0 {
		t.Errorf("done:\n%s", s)
	}
}

// TestConsoleGarbage: control bytes and escapes from a console never
// reach the terminal.
func TestConsoleGarbage(t *testing.T) {
	f := newFixture(t, 80, 24, slotsIdle(1))
	f.st.Set(lines.SlotView{ID: "A1", Line: "line1", State: lines.StateBooting, Unit: 1, HWSerial: "HW1", StartedAt: t0})
	f.send(t, eventsMsg{events: []lines.Event{{At: t0, Kind: lines.EventLine, Slot: "A1", Unit: 1, Text: "ok\x1b[2J\x1b[H\x07bell\rcr\x00"}}})
	f.keys(t, "enter")
	out := f.m.Render()
	for _, bad := range []string{"\x1b[2J", "\x1b[H", "\x07", "\r", "\x00"} {
		if strings.Contains(out, bad) {
			t.Errorf("screen holds %q", bad)
		}
	}
	if !strings.Contains(f.screen(), "okbellcr") {
		t.Errorf("printable text lost:\n%s", f.screen())
	}
}

func TestNaturalCompare(t *testing.T) {
	ids := []string{"A10", "B1", "A2", "A1", "A", "A1x", "B10", "B2"}
	slices.SortFunc(ids, naturalCompare)
	if want := []string{"A", "A1", "A1x", "A2", "A10", "B1", "B2", "B10"}; !slices.Equal(ids, want) {
		t.Errorf("sorted %v, want %v", ids, want)
	}
}

// TestKeyBarKeepsTheWayBack: at 80 columns every view's key bar shows how
// to go back (and quit, where q quits) before its other keys.
func TestKeyBarKeepsTheWayBack(t *testing.T) {
	tests := []struct {
		name  string
		keys  []string
		start string // how the key bar starts
		has   []string
	}{
		{"bench", nil, "q quit", []string{"enter detail"}},
		{"detail", []string{"enter"}, "esc back • q quit", []string{"previous slot"}},
		{"detail of a failure", []string{"right", "enter"}, "esc back • q quit", nil},
		{"batch", []string{"b"}, "esc back", []string{"q quit"}},
		{"help", []string{"?"}, "esc back • q quit", nil},
		{"search", []string{"/"}, "esc back", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := detailFixture(t, 80, 24)
			f.keys(t, tt.keys...)
			rows := strings.Split(f.screen(), "\n")
			bar := strings.TrimSpace(rows[len(rows)-1])
			if !strings.HasPrefix(bar, tt.start) {
				t.Errorf("key bar %q does not start with %q", bar, tt.start)
			}
			for _, h := range tt.has {
				if !strings.Contains(bar, h) {
					t.Errorf("key bar %q lacks %q", bar, h)
				}
			}
		})
	}
}

// TestDetailOfPulledFailure: once a failed board is pulled, its detail
// keeps the FAIL, its reason and its durations fixed at the unit's end:
// the clock moving on changes nothing.
func TestDetailOfPulledFailure(t *testing.T) {
	f := detailFixture(t, 120, 40)
	now := t0
	f.m.c.Now = func() time.Time { return now }
	f.keys(t, "right", "enter")
	// The board is pulled: the pipeline resets the slot's view.
	f.st.Set(lines.SlotView{ID: "B1", Line: "line2", State: lines.StateIdle})
	f.send(t, eventsMsg{events: []lines.Event{{At: now, Kind: lines.EventState, Slot: "B1", Line: "line2", State: lines.StateIdle}}})
	body := func() string { return strings.Join(strings.Split(f.screen(), "\n")[headerHeight:], "\n") } // the header has the clock
	before := body()
	// unitEvents: B1's unit failed 10.8 s after it started.
	for _, want := range []string{"✘ FAIL  0:11 · board removed", "FAILED: kernel-panic", "Unable to mount root fs",
		"  kernel                 1.9s", "FAIL                                    │"} {
		if !strings.Contains(before, want) {
			t.Errorf("detail lacks %q:\n%s", want, before)
		}
	}
	if strings.Contains(before, "s …") || strings.Contains(before, "EMPTY") {
		t.Errorf("a pulled failure shows a running timer or EMPTY:\n%s", before)
	}
	for _, d := range []time.Duration{time.Second, time.Minute, time.Hour} {
		now = t0.Add(d)
		f.send(t, tickMsg(now))
		if after := body(); after != before {
			t.Fatalf("the detail changed %s later:\n%s\nwas:\n%s", d, after, before)
		}
	}
	// A new board starts a new unit: its timer runs again.
	f.st.Set(lines.SlotView{ID: "B1", Line: "line2", State: lines.StatePresent, HWSerial: "HW2003", Unit: 8, StartedAt: now})
	f.send(t, eventsMsg{events: []lines.Event{{At: now, Kind: lines.EventState, Slot: "B1", Line: "line2", Unit: 8, State: lines.StatePresent}}})
	now = now.Add(3 * time.Second)
	f.send(t, tickMsg(now))
	if s := f.screen(); !strings.Contains(s, "STARTING  0:03") || !strings.Contains(s, "3.0s …") || strings.Contains(s, "board removed") {
		t.Errorf("new unit:\n%s", s)
	}
}

// TestOperatorPrompt: without an operator the interface asks for a name
// or a badge before the bench shows, refuses an empty one, lets every key
// type (q quits nothing), and gives the name to the station.
func TestOperatorPrompt(t *testing.T) {
	f := newFixtureAs(t, 80, 24, slotsMixed(), "")
	s := f.screen()
	if f.m.screen != screenOperator || !strings.Contains(s, "WHO IS AT THE BENCH?") || !strings.Contains(s, "operator: ") ||
		strings.Contains(s, "FLASHING") || !strings.Contains(s, "enter start the bench") {
		t.Fatalf("the bench shows before an operator is named:\n%s", s)
	}
	for _, keys := range [][]string{{"enter"}, {" ", " ", "enter"}} {
		f.keys(t, keys...)
		if f.m.screen != screenOperator || !strings.Contains(f.screen(), "a name or a badge is needed to start the bench") {
			t.Fatalf("%q accepted as a name:\n%s", keys, f.screen())
		}
	}
	// The bench's letters type into the name.
	f.keys(t, "q", "b", "?", "/", "r", "d", "E", "y")
	if f.m.screen != screenOperator || f.m.Asking() || f.m.op.Name() != "qb?/rdEy" || len(f.st.Actions()) != 0 {
		t.Fatalf("keys did more than type: screen %d name %q actions %q", f.m.screen, f.m.op.Name(), f.st.Actions())
	}
	if strings.Contains(f.screen(), "is needed") {
		t.Error("the refusal stays once a name is typed")
	}
	for range 8 {
		f.keys(t, "backspace")
	}
	f.keys(t, "A", "n", "a", " ", "M")
	f.keys(t, "enter")
	if f.m.screen != screenBench || !slices.Equal(f.st.Actions(), []string{"operator Ana M"}) {
		t.Fatalf("enter: screen %d actions %q", f.m.screen, f.st.Actions())
	}
	if s := f.screen(); !strings.Contains(s, "FLASHSTATION bench-01 · Ana M ·") || !strings.Contains(s, "operator Ana M at the bench") ||
		!strings.Contains(s, "FLASHING") {
		t.Errorf("bench after the name:\n%s", s)
	}
	// The operator's actions go on as usual.
	f.keys(t, "l", "r")
	if got := f.st.Actions(); !slices.Equal(got, []string{"operator Ana M", "retry B1"}) {
		t.Errorf("actions %q", got)
	}

	// A badge scanner that pastes its code, then Enter.
	f = newFixtureAs(t, 120, 40, slotsIdle(4), "")
	f.send(t, tea.PasteMsg{Content: "BADGE-000731"})
	f.keys(t, "enter")
	if f.m.screen != screenBench || !slices.Equal(f.st.Actions(), []string{"operator BADGE-000731"}) ||
		!strings.Contains(f.screen(), "operator BADGE-000731") {
		t.Errorf("badge scan: screen %d actions %q\n%s", f.m.screen, f.st.Actions(), f.screen())
	}

	// ctrl+c still quits from the prompt (nothing in work).
	f = newFixtureAs(t, 80, 24, slotsIdle(2), "")
	if _, cmd := f.m.Update(keyMsg("ctrl+c")); !isQuit(cmd) {
		t.Error("ctrl+c did not quit from the operator prompt")
	}
}

// TestRetryQuestionOutlivedBySlot: a PASS whose board is pulled while
// the operator is asked is not retried on y.
func TestRetryQuestionOutlivedBySlot(t *testing.T) {
	f := newFixture(t, 120, 40, slotsMixed())
	f.keys(t, "r")
	f.st.Set(lines.SlotView{ID: "A1", Line: "line1", State: lines.StateIdle})
	f.send(t, tickMsg(t0))
	f.keys(t, "y")
	if got := f.st.Actions(); len(got) != 0 || !strings.Contains(f.screen(), "A1 changed while asked: not retried") {
		t.Errorf("actions %q\n%s", got, f.screen())
	}
}

// TestQuestionsKeepTheirAnswer: a question wider than the terminal is
// cut in its middle: its y/n stays on screen.
func TestQuestionsKeepTheirAnswer(t *testing.T) {
	for _, tt := range []struct {
		w    int
		keys []string
		end  string
	}{
		{80, []string{"d"}, "leaves the card - y/n"},                        // A1: PASS
		{80, []string{"l", "l", "d"}, "then the slot takes no board - y/n"}, // A2: booting
		{50, []string{"l", "l", "d"}, "… - y/n"},
		{40, []string{"q"}, "… - quit? y/n"},
		{40, []string{"E"}, "…? y/n"},
		{40, []string{"r"}, "… - y/n"},
	} {
		f := newFixture(t, tt.w, 24, slotsMixed())
		f.keys(t, tt.keys...)
		rows := strings.Split(f.screen(), "\n")
		if bar := strings.TrimRight(rows[len(rows)-1], " "); !strings.HasSuffix(bar, tt.end) || len([]rune(rows[len(rows)-1])) != tt.w {
			t.Errorf("%d columns, %q: question %q, want it to end %q", tt.w, tt.keys, bar, tt.end)
		}
	}
}
