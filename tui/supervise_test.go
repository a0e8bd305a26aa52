package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"

	"github.com/flashstation/flashstation/ledger"
)

// fakeFactory answers FactoryReport with rep, or err.
type fakeFactory struct {
	rep ledger.FactoryReport
	err error
	got ledger.FactoryFilter
}

func (f *fakeFactory) FactoryReport(_ context.Context, ff ledger.FactoryFilter) (ledger.FactoryReport, error) {
	f.got = ff
	return f.rep, f.err
}

func ratio(x float64) *float64 { return &x }

func factoryFixture() ledger.FactoryReport {
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.Local)
	stats := func(units, pass, fail int, slots ...ledger.SlotStat) ledger.Stats {
		s := ledger.Stats{Units: units, Passed: pass, Failed: fail, Boards: units, BoardsFinished: pass + fail, BoardsPassed: pass,
			Yield: ratio(float64(pass) / float64(pass+fail)), FirstPassYield: ratio(float64(pass) / float64(pass+fail)),
			UnitsPerHour: ratio(float64(pass) * 2), MedianFlashSecs: 41.5, MedianBootSecs: 63.2, Slots: slots}
		if fail > 0 {
			s.Pareto = []ledger.ReasonCount{{Reason: "kernel-panic", Count: fail}}
		}
		return s
	}
	a3 := ledger.SlotStat{Line: "line1", Slot: "A3", Units: 20, Failed: 9, FailRate: 0.45, FailedBoards: 9, Suspect: true}
	a1 := ledger.SlotStat{Line: "line1", Slot: "A1", Units: 40, Failed: 1, FailRate: 0.025, FailedBoards: 1}
	return ledger.FactoryReport{
		At:    t0,
		Total: stats(300, 280, 20),
		Lines: []ledger.Figures{{Line: "line1", Stats: stats(160, 145, 15)}, {Line: "line2", Stats: stats(140, 135, 5)}},
		LineBench: []ledger.Figures{
			{Line: "line1", Station: "bench-1", Stats: stats(60, 50, 10, a1, a3)},
			{Line: "line1", Station: "bench-2", Stats: stats(100, 95, 5)},
			{Line: "line2", Station: "bench-3", Stats: stats(140, 135, 5)},
		},
		Stations: []ledger.Bench{{Station: "bench-1", Lines: []string{"line1"}, SeenAt: t0},
			{Station: "bench-2", Lines: []string{"line1"}, SeenAt: t0.Add(-5 * time.Minute), Silent: true},
			{Station: "bench-3", Lines: []string{"line2"}, SeenAt: t0}},
		Duplicates: []ledger.FactoryDuplicate{{Kind: "serial", Value: "acme/gw/SN0042", Stations: []string{"bench-1", "bench-3"}}},
	}
}

func newSuperviseFixture(t *testing.T, f *fakeFactory, w, h int) *Supervise {
	t.Helper()
	m := NewSupervise(context.Background(), SuperviseOptions{Records: f, Where: "postgres://db/flashstation",
		Now: func() time.Time { return time.Date(2026, 12, 2, 9, 0, 2, 0, time.Local) }})
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	m.Update(m.read()())
	return m
}

func pressKeys(m *Supervise, keys ...string) {
	for _, k := range keys {
		var msg tea.KeyPressMsg
		switch k {
		case "enter":
			msg = tea.KeyPressMsg{Code: tea.KeyEnter}
		case "esc":
			msg = tea.KeyPressMsg{Code: tea.KeyEscape}
		case "down":
			msg = tea.KeyPressMsg{Code: tea.KeyDown}
		case "right":
			msg = tea.KeyPressMsg{Code: tea.KeyRight}
		default:
			msg = tea.KeyPressMsg{Code: rune(k[0]), Text: k}
		}
		m.Update(msg)
	}
}

// TestSuperviseGolden renders the board and a drill-down at three sizes.
func TestSuperviseGolden(t *testing.T) {
	for _, v := range []struct {
		name string
		keys []string
	}{{"board", nil}, {"bench-slots", []string{"right", "enter"}}, {"line2", []string{"down", "right", "right", "right"}}} {
		for _, sz := range sizes {
			t.Run(fmt.Sprintf("%s/%dx%d", v.name, sz[0], sz[1]), func(t *testing.T) {
				m := newSuperviseFixture(t, &fakeFactory{rep: factoryFixture()}, sz[0], sz[1])
				pressKeys(m, v.keys...)
				out := ansi.Strip(m.Render())
				checkScreen(t, out, sz[0], sz[1])
				golden.RequireEqual(t, out)
			})
		}
	}
}

// TestSuperviseSays: what a supervisor must not miss is on the board,
// and a lost factory ledger is said with the age of the figures kept.
func TestSuperviseSays(t *testing.T) {
	f := &fakeFactory{rep: factoryFixture()}
	m := newSuperviseFixture(t, f, 160, 40)
	out := ansi.Strip(m.Render())
	for _, want := range []string{"SILENT: bench-2 since 08:55:00", "RECORDED ON TWO BENCHES: serial acme/gw/SN0042 (bench-1+bench-3)",
		"bench-2 SILENT", "all lines: 300 units"} {
		if !strings.Contains(out, want) {
			t.Errorf("board lacks %q:\n%s", want, out)
		}
	}
	pressKeys(m, "right", "enter")
	if out := ansi.Strip(m.Render()); !strings.Contains(out, "A3") || !strings.Contains(out, "SUSPECT") || strings.Contains(out, "A1 ") && strings.Contains(out, "A1   SUSPECT") {
		t.Errorf("bench-1's slots:\n%s", out)
	}
	f.err = errors.New("connection refused")
	m.Update(m.read()())
	if out := ansi.Strip(m.Render()); !strings.Contains(out, "FACTORY LEDGER UNREACHABLE: connection refused - figures of 09:00:02") || !strings.Contains(out, "A3") {
		t.Errorf("after a failed read:\n%s", out)
	}
	// A tick while a read is in flight asks nothing more; one after it
	// answered reads again.
	m.o.Every = time.Nanosecond
	runAll := func(cmd tea.Cmd) {
		if cmd == nil {
			return
		}
		if batch, ok := cmd().(tea.BatchMsg); ok {
			for _, c := range batch {
				if c != nil {
					c()
				}
			}
		}
	}
	m.read()
	f.got = ledger.FactoryFilter{LineID: "untouched"}
	_, cmd := m.Update(superviseTickMsg{})
	runAll(cmd)
	if f.got.LineID != "untouched" || cmd == nil {
		t.Error("a second read while one was in flight, or the timer stopped")
	}
	m.Update(superviseReportMsg{rep: factoryFixture(), at: time.Now()})
	_, cmd = m.Update(superviseTickMsg{})
	runAll(cmd)
	if f.got.LineID == "untouched" {
		t.Error("no read after the last one answered")
	}
	if _, cmd := m.Update(tea.KeyPressMsg{Code: 'q', Text: "q"}); cmd == nil {
		t.Error("q does not quit")
	}
}
