package tui

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"github.com/flashstation/flashstation/lines"
)

// Card geometry: a card is cardHeight rows (frame included) and at least
// minCardWidth columns; the grid has 1 to maxColumns columns.
const (
	cardHeight   = 7
	minCardWidth = 26
	maxColumns   = 8
)

// BenchKeyMap are the bench view's keys.
type BenchKeyMap struct {
	Up, Down, Left, Right key.Binding
	Enter, Retry, Disable key.Binding
	Batch, Search, Help   key.Binding
	Quit                  key.Binding
}

// ShortHelp is the footer's help.
func (k BenchKeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Enter, k.Retry, k.Disable, k.Batch, k.Search, k.Help, k.Quit}
}

// FullHelp is the help view's.
func (k BenchKeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{{k.Up, k.Down, k.Left, k.Right}, {k.Enter, k.Retry, k.Disable}, {k.Batch, k.Search, k.Help, k.Quit}}
}

// Bench is the grid of slot cards.
type Bench struct {
	c      *Common
	s      *store
	KeyMap BenchKeyMap
	sel    int // selected slot index
	top    int // first visible row
}

// NewBench returns the bench view over the store's slots.
func NewBench(c *Common, s *store) Bench {
	k := c.Keys
	return Bench{c: c, s: s, KeyMap: BenchKeyMap{Up: k.Up, Down: k.Down, Left: k.Left, Right: k.Right,
		Enter: k.Enter, Retry: k.Retry, Disable: k.Disable, Batch: k.Batch, Search: k.Search, Help: k.Help, Quit: k.Quit}}
}

// Selected returns the selected slot's id.
func (b Bench) Selected() string {
	if len(b.s.order) == 0 {
		return ""
	}
	return b.s.order[b.sel]
}

// Select selects a slot by id.
func (b *Bench) Select(id string) {
	for i, o := range b.s.order {
		if o == id {
			b.sel = i
		}
	}
	b.scroll()
}

// layout returns the grid's columns, card width and visible rows for a
// height of h lines.
func (b Bench) layout(h int) (cols, cardW, rows int) {
	n := len(b.s.order)
	cols = b.c.Width / minCardWidth
	cols = max(1, min(cols, maxColumns, max(n, 1)))
	cardW = b.c.Width / cols
	rows = max(1, h/cardHeight)
	return cols, cardW, rows
}

// gridHeight is the height the grid may use: the screen less the header
// and the footer.
func (b Bench) gridHeight() int { return max(cardHeight, b.c.Height-headerHeight-footerHeight) }

func (b *Bench) scroll() {
	cols, _, rows := b.layout(b.gridHeight())
	row := b.sel / cols
	if row < b.top {
		b.top = row
	}
	if row >= b.top+rows {
		b.top = row - rows + 1
	}
	total := (len(b.s.order) + cols - 1) / cols
	b.top = max(0, min(b.top, total-rows))
}

// Update moves the selection.
func (b Bench) Update(msg tea.Msg) (Bench, tea.Cmd) {
	km, ok := msg.(tea.KeyPressMsg)
	if !ok || len(b.s.order) == 0 {
		b.scroll()
		return b, nil
	}
	cols, _, _ := b.layout(b.gridHeight())
	n := len(b.s.order)
	switch {
	case key.Matches(km, b.KeyMap.Left):
		b.sel = max(0, b.sel-1)
	case key.Matches(km, b.KeyMap.Right):
		b.sel = min(n-1, b.sel+1)
	case key.Matches(km, b.KeyMap.Up):
		if b.sel-cols >= 0 {
			b.sel -= cols
		}
	case key.Matches(km, b.KeyMap.Down):
		if b.sel+cols < n {
			b.sel += cols
		} else if b.sel/cols < (n-1)/cols {
			b.sel = n - 1 // the last, shorter row
		}
	}
	b.scroll()
	return b, nil
}

// View renders the visible rows of cards in h lines.
func (b Bench) View(h int) string {
	if len(b.s.order) == 0 {
		return fit(b.c.Styles.Dim.Render("no slots configured"), b.c.Width)
	}
	cols, cardW, rows := b.layout(h)
	var out []string
	n := len(b.s.order)
	for r := b.top; r < b.top+rows && r*cols < n; r++ {
		var cards []string
		for c := 0; c < cols; c++ {
			i := r*cols + c
			if i >= n {
				break
			}
			cards = append(cards, b.card(b.s.byID[b.s.order[i]], cardW, i == b.sel))
		}
		out = append(out, lipgloss.JoinHorizontal(lipgloss.Top, cards...))
	}
	return strings.Join(out, "\n")
}

// scrollInfo says which rows are shown when not all fit.
func (b Bench) scrollInfo() string {
	cols, _, rows := b.layout(b.gridHeight())
	total := (len(b.s.order) + cols - 1) / cols
	if total <= rows {
		return ""
	}
	s := "rows " + itoa(b.top+1) + "-" + itoa(min(total, b.top+rows)) + " of " + itoa(total)
	if b.top > 0 {
		s = "↑ " + s
	}
	if b.top+rows < total {
		s += " ↓"
	}
	return s
}

// card renders one slot: its id and badge, board and serial, stage,
// progress or reason, and what to do.
func (b Bench) card(d *slotData, w int, selected bool) string {
	st := b.c.Styles
	v := d.View
	inner := w - 4 // frame and padding
	now := b.c.Now()
	var elapsed string
	if !v.StartedAt.IsZero() {
		end := now
		if !d.Ended.IsZero() && (v.State == lines.StatePass || v.State == lines.StateFail) {
			end = d.Ended
		}
		if v.State != lines.StateIdle && v.State != lines.StateDisabled {
			elapsed = clock(end.Sub(v.StartedAt))
		}
	}
	l1 := spread(st.Bold.Render(v.ID)+" "+st.badge(v.State), st.Dim.Render(elapsed), inner)
	var l2, l3, l4, l5 string
	board := "board " + v.HWSerial
	if v.Attempt > 1 {
		board += " (try " + itoa(v.Attempt) + ")"
	}
	switch v.State {
	case lines.StateIdle:
		l2 = st.Dim.Render("no board")
		if last := d.Last; last != nil {
			if last.State == lines.StatePass {
				l3 = st.Dim.Render("last: ✔ " + last.HWSerial + " " + last.Serial)
			} else {
				l3 = st.Dim.Render("last: ✘ " + last.HWSerial + " " + last.Reason)
			}
			l4 = st.Dim.Render("at " + last.At.Local().Format("15:04:05"))
		}
		l5 = st.Dim.Render("insert a board")
	case lines.StateDisabled:
		l2 = st.Dim.Render("out of service")
		l5 = st.Dim.Render("d: put back in service")
	case lines.StateStopped:
		l2 = st.Dim.Render("station stopping")
	case lines.StatePresent:
		l2 = board
		l3 = "opening console and target"
		l5 = st.Dim.Render(cardLine(v.LastLine))
	case lines.StateFlashing:
		l2 = board
		p := v.Progress
		frac := 0.0
		if p.Total > 0 {
			frac = float64(p.Done) / float64(p.Total)
		}
		what := "write"
		if p.Phase == "verify" {
			what = "verify"
		}
		l3 = what + " " + pct0(frac) + "  " + mbps(p.Rate)
		eta := ""
		if p.ETA > 0 {
			eta = clock(p.ETA)
		}
		l4 = st.bar(frac, inner-6) + " " + fmt.Sprintf("%5s", eta)
		l5 = st.Dim.Render(cardLine(v.LastLine))
	case lines.StateBooting, lines.StateRegister:
		l2 = board
		l3 = "boot: " + v.Stage
		if v.State == lines.StateRegister {
			l3 = "getting its serial"
		}
		l4 = st.Dim.Render(stageInfo(d.Timeline, now))
		l5 = st.Dim.Render(cardLine(v.LastLine))
	case lines.StatePass:
		l2 = board
		l3 = st.OK.Render("serial " + v.Serial)
		if v.Duplicate {
			l4 = st.Warn.Render("⚠ serial signed before")
		} else {
			l4 = "assertion recorded"
		}
		l5 = st.OK.Render("→ remove board")
	case lines.StateFail:
		r := lines.ReasonFor(v.Reason)
		l2 = board
		l3 = st.Bad.Render(v.Reason)
		l4 = r.What
		l5 = st.Bold.Render("→ " + r.Do)
	}
	if v.HWSerial == "" && (v.State == lines.StateFail || v.State == lines.StatePass) {
		l2 = st.Dim.Render("no board")
	}
	body := strings.Join([]string{l1, fit(l2, inner), fit(l3, inner), fit(l4, inner), fit(l5, inner)}, "\n")
	return st.card(v.State, selected).Width(w).Render(body)
}

// stageInfo says how many boot stages were seen and how long the
// current one has lasted (a stuck stage shows a growing time).
func stageInfo(t []mark, now time.Time) string {
	n := 0
	var last time.Time
	for _, m := range t {
		if m.Stage && !m.Skipped {
			n++
			last = m.At
		}
	}
	if n == 0 {
		return "waiting for the console"
	}
	return plural(n, "stage", "stages") + " seen, this one " + clock(now.Sub(last))
}

// syslogPrefix is a journal line's "Feb 10 10:03:10 host " prefix.
var syslogPrefix = regexp.MustCompile(`^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \S+ `)

// cardLine is a console line as a card shows it: printable, without
// leading blanks or a journal prefix.
func cardLine(s string) string {
	s = strings.TrimSpace(sanitize(s))
	return syslogPrefix.ReplaceAllString(s, "")
}

func pct0(x float64) string { return itoa(int(100*x)) + "%" }

func itoa(n int) string { return strconv.Itoa(n) }
