package tui

import (
	"context"
	"fmt"
	"image/color"
	"io"
	"math"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/seed"
	"github.com/flashstation/flashstation/tui/tuitest"
)

// bench64 is 64 slots flashing, with the station's event stream.
func bench64(b *testing.B, w, h int) (*Model, *tuitest.Station, chan lines.Event) {
	slots := slotsFlashing(64)
	st := tuitest.New(slots, health(1, 2))
	ch := make(chan lines.Event, 8192)
	m := New(context.Background(), Options{Station: st, Events: ch, StationID: "bench-01", Operator: "ana",
		Logger: zerolog.Nop(), Width: w, Height: h})
	return m, st, ch
}

// tickEvents is one tenth of a second of a 64-slot bench: every slot
// reports progress and a console line.
func tickEvents(slots []lines.SlotView, n int) []lines.Event {
	evs := make([]lines.Event, 0, 2*len(slots))
	now := time.Now()
	for _, v := range slots {
		p := v.Progress
		p.Done = (p.Done + int64(n)*(1<<20)) % p.Total
		evs = append(evs, lines.Event{At: now, Kind: lines.EventProgress, Slot: v.ID, Unit: v.Unit, Progress: p},
			lines.Event{At: now, Kind: lines.EventLine, Slot: v.ID, Unit: v.Unit, Text: fmt.Sprintf("[ %d.000] mmcblk0: p%d", n, n)})
	}
	return evs
}

// BenchmarkFrame64 is one redraw of a 64-slot bench after a tenth of a
// second of events (128), at 200x60: Update and View.
func BenchmarkFrame64(b *testing.B) {
	for _, sz := range [][2]int{{200, 60}, {250, 70}} {
		b.Run(fmt.Sprintf("%dx%d", sz[0], sz[1]), func(b *testing.B) {
			m, st, _ := bench64(b, sz[0], sz[1])
			slots := st.Slots()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n++
				m.Update(eventsMsg{events: tickEvents(slots, n)})
				_ = m.View()
			}
			// At 10 Hz per slot the reader delivers at most 1/eventWindow
			// messages a second (20): the worst case per second.
			perSec := float64(time.Second / eventWindow)
			b.ReportMetric(100*perSec*float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9, "%core@20fps")
		})
	}
}

// BenchmarkProgram64At10Hz runs the real program (Bubble Tea's renderer
// writing to a discarded terminal of 200x60) while 64 slots report
// progress and console lines at 10 Hz each, and reports the process's CPU
// time per wall second: the interface's cost on the station.
func BenchmarkProgram64At10Hz(b *testing.B) {
	const run = 2 * time.Second
	for b.Loop() {
		m, st, ch := bench64(b, 200, 60)
		slots := st.Slots()
		ctx, cancel := context.WithCancel(context.Background())
		p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(nil), tea.WithOutput(io.Discard),
			tea.WithWindowSize(200, 60), tea.WithoutSignalHandler())
		done := make(chan struct{})
		go func() { p.Run(); close(done) }()
		time.Sleep(200 * time.Millisecond)
		before := cpuTime()
		start := time.Now()
		// Each slot reports every 100 ms, the slots spread over the tenth.
		tick := time.NewTicker(100 * time.Millisecond / time.Duration(len(slots)/4))
		n := 0
		for time.Since(start) < run {
			<-tick.C
			for _, e := range tickEvents(slots[(n%16)*4:(n%16)*4+4], n) {
				ch <- e
			}
			n++
		}
		tick.Stop()
		used := cpuTime() - before
		wall := time.Since(start)
		cancel()
		<-done
		b.ReportMetric(100*used.Seconds()/wall.Seconds(), "%core")
		b.ReportMetric(float64(n*4*2)/wall.Seconds(), "events/s")
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestRemovedFailStays: a failed board pulled from its slot leaves the
// card a FAIL ("removed", with what to do) until the next board comes or
// the operator clears it with c; a passed board's slot just empties.
func TestRemovedFailStays(t *testing.T) {
	f := newFixture(t, 120, 40, slotsIdle(2))
	f.st.Set(lines.SlotView{ID: "A1", Line: "line1", State: lines.StateFail, HWSerial: "HW7", Unit: 7, Attempt: 1, Reason: "boot-loop", StartedAt: t0})
	f.send(t, eventsMsg{events: []lines.Event{{At: t0.Add(30 * time.Second), Kind: lines.EventVerdict, Slot: "A1", Unit: 7, State: lines.StateFail, Reason: "boot-loop", HWSerial: "HW7"}}})
	// The board is pulled: the pipeline says the slot is empty.
	f.st.Set(lines.SlotView{ID: "A1", Line: "line1", State: lines.StateIdle})
	f.send(t, tickMsg(t0.Add(time.Minute)))
	s := f.screen()
	if !regexp.MustCompile(`A1\s+✘ (F A I L|FAIL) ✘`).MatchString(s) || !strings.Contains(s, "board HW7 removed") || !strings.Contains(s, "→ REJECT tray") {
		t.Fatalf("pulled FAIL:\n%s", s)
	}
	if strings.Contains(s, "insert a board") && strings.Index(s, "insert a board") < strings.Index(s, "B1") {
		t.Errorf("the removed FAIL's card says insert a board:\n%s", s)
	}
	if st, removed := f.m.s.slot("A1").shown(); st != lines.StateFail || !removed {
		t.Errorf("shown %s %v", st, removed)
	}
	f.keys(t, "c")
	if s := f.screen(); strings.Contains(s, "removed") || !strings.Contains(s, "insert a board") || !strings.Contains(s, "last: ✘ FAIL HW7 boot-loop") || strings.Contains(s, "last: ✔") {
		t.Errorf("after c:\n%s", s)
	}
	// Another FAIL, pulled, then a new board: the new board's card.
	f.st.Set(lines.SlotView{ID: "A1", Line: "line1", State: lines.StateFail, HWSerial: "HW8", Unit: 8, Reason: "kernel-panic", StartedAt: t0})
	f.send(t, eventsMsg{events: []lines.Event{{At: t0, Kind: lines.EventVerdict, Slot: "A1", Unit: 8, State: lines.StateFail, Reason: "kernel-panic", HWSerial: "HW8"}}})
	f.st.Set(lines.SlotView{ID: "A1", Line: "line1", State: lines.StateIdle})
	f.send(t, tickMsg(t0.Add(time.Minute)))
	// A board fault on its first try: retried, but the board is out of
	// the slot, so r has nothing to retry.
	if s := f.screen(); !strings.Contains(s, "→ reinsert board") || strings.Contains(s, "→ retry (r)") {
		t.Errorf("a pulled first-try FAIL:\n%s", s)
	}
	f.st.Set(lines.SlotView{ID: "A1", Line: "line1", State: lines.StatePresent, HWSerial: "HW9", Unit: 9, StartedAt: t0})
	f.send(t, eventsMsg{events: []lines.Event{{At: t0, Kind: lines.EventState, Slot: "A1", Unit: 9, State: lines.StatePresent}}})
	if s := f.screen(); strings.Contains(s, "removed") || !strings.Contains(s, "board HW9") {
		t.Errorf("a new board:\n%s", s)
	}
}

// TestLineStopBanner: a line whose vault cannot sign shows a banner
// across the bench, and its empty slots wait for the vault instead of
// asking for a board; the other line's do not.
func TestLineStopBanner(t *testing.T) {
	f := newFixture(t, 120, 40, slotsIdle(2))
	h := f.st.Health()
	h[0].VaultOK, h[0].VaultChecked, h[0].VaultError = false, t0, "connection refused"
	f.st.SetHealth(h)
	f.send(t, tickMsg(t0))
	s := f.screen()
	if !strings.Contains(s, "LINE LINE1 STOPPED: vault unreachable - boards wait") {
		t.Fatalf("no banner:\n%s", s)
	}
	a1, b1 := cardOf(s, "A1"), cardOf(s, "B1")
	if !strings.Contains(a1, "waiting for the vault") || strings.Contains(a1, "insert a board") {
		t.Errorf("line1's empty slot:\n%s\nscreen:\n%s", a1, s)
	}
	if !strings.Contains(b1, "insert a board") {
		t.Errorf("line2's empty slot:\n%s", b1)
	}
	h[0].VaultDatabaseDown = true
	f.st.SetHealth(h)
	f.send(t, tickMsg(t0))
	if s := f.screen(); !strings.Contains(s, "STOPPED: vault database down") {
		t.Errorf("database down:\n%s", s)
	}
	h[0].VaultOK, h[1].ProxyStopped = true, "accept tcp: too many open files"
	f.st.SetHealth(h)
	f.send(t, tickMsg(t0))
	if s := f.screen(); strings.Contains(s, "LINE LINE1") || !strings.Contains(s, "LINE LINE2 STOPPED: its recording proxy stopped") {
		t.Errorf("proxy stopped:\n%s", s)
	}
}

// TestImageRefusedBanner: a line whose image the identity gate refused is
// held: a banner names the cause and the first difference, and its empty
// slots say the image is refused and not to insert boards, in words, not
// only in colour; the other line's slots take boards.
func TestImageRefusedBanner(t *testing.T) {
	f := newFixture(t, 160, 40, slotsIdle(2))
	h := f.st.Health()
	h[0].Image = &seed.Verdict{Reason: seed.ReasonRefused, Cause: seed.CauseModelMismatch, Problems: []seed.Problem{
		{Cause: seed.CauseModelMismatch, Field: "model", Image: "acme-old", Line: "acme-gw", Text: `model: the image has "acme-old", the line wants "acme-gw"`}}}
	h[1].Image = &seed.Verdict{Pass: true}
	f.st.SetHealth(h)
	f.send(t, tickMsg(t0))
	s := f.screen()
	if !strings.Contains(s, `LINE LINE1 HELD: IMAGE REFUSED, wrong model - no board is touched: model: the image has "acme-old", the line wants "acme-gw"`) {
		t.Fatalf("no banner:\n%s", s)
	}
	a1, b1 := cardOf(s, "A1"), cardOf(s, "B1")
	for _, want := range []string{"✘ HELD", "IMAGE REFUSED", "wrong model", "do not insert boards"} {
		if !strings.Contains(a1, want) {
			t.Errorf("line1's slot lacks %q:\n%s", want, a1)
		}
	}
	if strings.Contains(a1, "insert a board") || strings.Contains(a1, "EMPTY") || !strings.Contains(b1, "insert a board") || !strings.Contains(b1, "EMPTY") || strings.Contains(b1, "REFUSED") {
		t.Errorf("slots:\n%s\n%s", a1, b1)
	}
}

// cardOf cuts a slot's card (the columns of its frame, its rows) out of
// a screen.
func cardOf(screen, id string) string {
	rows := strings.Split(screen, "\n")
	re := regexp.MustCompile(`[ ▶]` + id + ` `)
	for i, r := range rows {
		loc := re.FindStringIndex(r)
		if loc == nil {
			continue
		}
		runes := []rune(r)
		col := len([]rune(r[:loc[0]]))
		start, end := col, col
		for start > 0 && !strings.ContainsRune("│┃▌", runes[start]) {
			start--
		}
		for end < len(runes)-1 && !strings.ContainsRune("│┃▌", runes[end]) {
			end++
		}
		var out []string
		for _, rr := range rows[max(0, i-1):min(len(rows), i+6)] {
			rr := []rune(rr)
			out = append(out, string(rr[min(start, len(rr)):min(end+1, len(rr))]))
		}
		return strings.Join(out, "\n")
	}
	return ""
}

// TestPaletteContrast: in both palettes, text on tiles and badges, body
// and secondary text on the background, and the frames, are readable
// (WCAG contrast: 4.5 for text, 3 for frames); PASS and FAIL tiles differ
// in colour too.
func TestPaletteContrast(t *testing.T) {
	for name, p := range map[string]Palette{"dark": DarkPalette, "light": LightPalette} {
		check := func(what string, fg, bg color.Color, least float64) {
			if c := contrast(fg, bg); c < least {
				t.Errorf("%s: %s contrast %.2f, want at least %.1f", name, what, c, least)
			}
		}
		for _, st := range []string{lines.StatePass, lines.StateFail, lines.StatePresent, lines.StateFlashing, lines.StateBooting, lines.StateRegister, lines.StateIdle, lines.StateDisabled} {
			check("badge "+st, p.OnTile, p.stateColor(st), 4.5)
		}
		check("text", p.Text, p.Background, 4.5)
		check("dim text", p.Dim, p.Background, 4.5)
		check("warning", p.Warn, p.Background, 4.5)
		check("frame", p.Border, p.Background, 3)
		check("selection", p.Select, p.Background, 4.5)
		check("title", p.TitleFg, p.TitleBg, 4.5)
		check("PASS against FAIL", p.Pass, p.Fail, 1.1)
	}
}

// contrast is the WCAG 2 contrast ratio of two colours.
func contrast(a, b color.Color) float64 {
	lum := func(c color.Color) float64 {
		r, g, bl, _ := c.RGBA()
		ch := func(v uint32) float64 {
			x := float64(v) / 0xffff
			if x <= 0.03928 {
				return x / 12.92
			}
			return math.Pow((x+0.055)/1.055, 2.4)
		}
		return 0.2126*ch(r) + 0.7152*ch(g) + 0.0722*ch(bl)
	}
	la, lb := lum(a), lum(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

// TestBellOnFail: with Bell, a FAIL rings the terminal's bell (BEL, once
// per batch of events); a PASS does not, and without Bell nothing rings.
func TestBellOnFail(t *testing.T) {
	rings := func(bell bool, state string) int {
		f := newFixture(t, 80, 24, slotsIdle(2))
		f.m.opts.Bell = bell
		_, cmd := f.m.Update(eventsMsg{events: []lines.Event{{At: t0, Kind: lines.EventVerdict, Slot: "A1", Unit: 1, State: state, Reason: "boot-loop"}}})
		n := 0
		var walk func(c tea.Cmd, depth int)
		walk = func(c tea.Cmd, depth int) {
			if c == nil || depth > 3 {
				return
			}
			switch msg := c().(type) {
			case tea.BatchMsg:
				for _, c := range msg {
					walk(c, depth+1)
				}
			case tea.RawMsg:
				if msg.Msg == "\a" {
					n++
				}
			}
		}
		walk(cmd, 0)
		return n
	}
	if n := rings(true, lines.StateFail); n != 1 {
		t.Errorf("a FAIL rang %d times", n)
	}
	if n := rings(true, lines.StatePass); n != 0 {
		t.Errorf("a PASS rang %d times", n)
	}
	if n := rings(false, lines.StateFail); n != 0 {
		t.Errorf("without --bell a FAIL rang %d times", n)
	}
}

// TestUnreadableConsoleLine: a console line of undecodable bytes (a baud
// mismatch) shows as one marker per run, not mojibake.
func TestUnreadableConsoleLine(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"U-Boot \xff\xfe\xfd\x80 ok", "U-Boot ‹4 unreadable bytes› ok"},
		{"\xc0\xc1", "‹2 unreadable bytes›"},
		{"plain", "plain"},
		{"ok \xff then text", "ok ‹1 unreadable byte› then text"},
	} {
		if got := sanitize(tt.in); got != tt.want {
			t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestLightTerminal: with the station's own styles, a light background
// picks the light palette and a dark one the dark; styles a caller gave
// stay.
func TestLightTerminal(t *testing.T) {
	f := newFixture(t, 80, 24, slotsIdle(2))
	f.send(t, tea.BackgroundColorMsg{Color: color.White})
	if f.m.c.Styles.Palette.Background != LightPalette.Background {
		t.Errorf("a light terminal got %v", f.m.c.Styles.Palette.Background)
	}
	f.send(t, tea.BackgroundColorMsg{Color: color.Black})
	if f.m.c.Styles.Palette.Background != DarkPalette.Background {
		t.Errorf("a dark terminal got %v", f.m.c.Styles.Palette.Background)
	}
	given := NewStyles(true)
	m := New(context.Background(), Options{Station: f.st, Records: f.led, Styles: given, Logger: zerolog.Nop(),
		Tick: func(time.Duration, func(time.Time) tea.Msg) tea.Cmd { return nil }})
	m.Update(tea.BackgroundColorMsg{Color: color.White})
	if m.c.Styles != given {
		t.Error("a caller's styles were replaced")
	}
}

// TestManyStoppedLines: however many lines stop, their banner is one row,
// and the cards keep the rest of the screen.
func TestManyStoppedLines(t *testing.T) {
	f := newFixture(t, 80, 24, slotsIdle(2))
	var h []lines.LineHealth
	for i := range 25 {
		h = append(h, lines.LineHealth{Line: fmt.Sprintf("l%d", i), VaultChecked: t0, VaultError: "down"})
	}
	f.st.SetHealth(h)
	f.send(t, tickMsg(t0))
	s := f.screen()
	if strings.Count(s, "STOPPED") != 1 || !strings.Contains(s, "25 LINES STOPPED") || !strings.Contains(s, "A1") || !strings.Contains(s, "B1") {
		t.Errorf("25 stopped lines:\n%s", s)
	}
	if rows := strings.Count(s, "\n") + 1; rows != 24 {
		t.Errorf("%d rows", rows)
	}
}

// TestTinyTerminal: every size draws exactly its rows, each exactly its
// width, without a panic; below 30x8 it says the terminal is too small.
func TestTinyTerminal(t *testing.T) {
	f := newFixture(t, 80, 24, slotsMixed())
	for w := 1; w <= 40; w++ {
		for h := 1; h <= 12; h++ {
			f.send(t, tea.WindowSizeMsg{Width: w, Height: h})
			s := f.screen()
			rows := strings.Split(s, "\n")
			if len(rows) != h {
				t.Fatalf("%dx%d: %d rows", w, h, len(rows))
			}
			for _, r := range rows {
				if cw := ansi.StringWidth(r); cw != w {
					t.Fatalf("%dx%d: a row of %d cells: %q", w, h, cw, r)
				}
			}
			if (w < minWidth || h < minHeight) && !strings.Contains(s, "too small") && h > 0 && w >= len("terminal too small") {
				t.Errorf("%dx%d does not say it is too small:\n%s", w, h, s)
			}
		}
	}
}
