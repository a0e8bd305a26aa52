package tui

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

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
	EndBatch              key.Binding
	Batch, Search, Help   key.Binding
	Quit                  key.Binding
}

// ShortHelp is the footer's help.
func (k BenchKeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Enter, k.Retry, k.Disable, k.Batch, k.Search, k.Help, k.Quit}
}

// FullHelp is the help view's.
func (k BenchKeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{{k.Up, k.Down, k.Left, k.Right}, {k.Enter, k.Retry, k.Disable, k.EndBatch}, {k.Batch, k.Search, k.Help, k.Quit}}
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
		Enter: k.Enter, Retry: k.Retry, Disable: k.Disable, EndBatch: k.EndBatch, Batch: k.Batch, Search: k.Search, Help: k.Help, Quit: k.Quit}}
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

// View renders the visible rows of cards in h lines, each line exactly
// the terminal's width.
func (b Bench) View(h int) string {
	w := b.c.Width
	if len(b.s.order) == 0 {
		return line(w, seg{"no slots configured", b.c.Styles.paints().dim})
	}
	cols, cardW, rows := b.layout(h)
	pad := strings.Repeat(" ", max(0, w-cols*cardW))
	var out strings.Builder
	n := len(b.s.order)
	cards := make([][cardHeight]string, cols)
	for r := b.top; r < b.top+rows && r*cols < n; r++ {
		k := 0
		for c := range cols {
			i := r*cols + c
			if i >= n {
				break
			}
			cards[c] = b.card(b.s.byID[b.s.order[i]], cardW, i == b.sel)
			k++
		}
		blank := strings.Repeat(" ", (cols-k)*cardW)
		for l := range cardHeight {
			if out.Len() > 0 {
				out.WriteByte('\n')
			}
			for c := range k {
				out.WriteString(cards[c][l])
			}
			out.WriteString(blank)
			out.WriteString(pad)
		}
	}
	return out.String()
}

// scrollInfo says which rows are shown when not all fit.
func (b Bench) scrollInfo() string {
	cols, _, rows := b.layout(b.gridHeight())
	total := (len(b.s.order) + cols - 1) / cols
	if total <= rows {
		return ""
	}
	s := "rows " + strconv.Itoa(b.top+1) + "-" + strconv.Itoa(min(total, b.top+rows)) + " of " + strconv.Itoa(total)
	if b.top > 0 {
		s = "↑ " + s
	}
	if b.top+rows < total {
		s += " ↓"
	}
	return s
}

// Frame characters: a thin rounded frame, a heavy one when selected.
var (
	frameThin  = [6]string{"╭", "╮", "╰", "╯", "─", "│"}
	frameThick = [6]string{"┏", "┓", "┗", "┛", "━", "┃"}
)

// card renders one slot in a frame of width w: its id, badge and elapsed
// time; board and serial; stage; progress or reason; what to do.
func (b Bench) card(d *slotData, w int, selected bool) [cardHeight]string {
	p := b.c.Styles.paints()
	v := d.View
	inner := w - 4 // frame and padding
	now := b.c.Now()
	var elapsed string
	if !v.StartedAt.IsZero() && v.State != lines.StateIdle && v.State != lines.StateDisabled {
		end := now
		if !d.Ended.IsZero() && (v.State == lines.StatePass || v.State == lines.StateFail) {
			end = d.Ended
		}
		elapsed = clock(end.Sub(v.StartedAt))
	}
	badge := BadgeOf(v.State)
	badgeText := " " + badge.Glyph + " " + badge.Word + " "
	l1 := []seg{{v.ID, p.bold}, {" ", paint{}}, {badgeText, p.badge[v.State]}}
	if gap := inner - cellWidth(v.ID) - 1 - cellWidth(badgeText) - len(elapsed); elapsed != "" && gap >= 1 {
		l1 = append(l1, seg{strings.Repeat(" ", gap), paint{}}, seg{elapsed, p.dim})
	}
	var l2, l3, l4, l5 []seg
	plain := func(s string) []seg { return []seg{{s, paint{}}} }
	dim := func(s string) []seg { return []seg{{s, p.dim}} }
	board := "board " + v.HWSerial
	if v.Attempt > 1 {
		board += " (try " + strconv.Itoa(v.Attempt) + ")"
	}
	switch v.State {
	case lines.StateIdle:
		l2 = dim("no board")
		if last := d.Last; last != nil {
			if last.State == lines.StatePass {
				l3 = dim("last: ✔ " + last.HWSerial + " " + last.Serial)
			} else {
				l3 = dim("last: ✘ " + last.HWSerial + " " + last.Reason)
			}
			l4 = dim("at " + last.At.Local().Format("15:04:05"))
		}
		l5 = dim("insert a board")
	case lines.StateDisabled:
		l2 = dim("out of service")
		l5 = dim("d: put back in service")
	case lines.StateStopped:
		l2 = dim("station stopping")
	case lines.StatePresent:
		l2 = plain(board)
		l3 = plain("opening console and target")
		l5 = dim(cardLine(v.LastLine))
	case lines.StateFlashing:
		l2 = plain(board)
		pr := v.Progress
		frac := 0.0
		if pr.Total > 0 {
			frac = min(1, max(0, float64(pr.Done)/float64(pr.Total)))
		}
		what := "write"
		if pr.Phase == "verify" {
			what = "verify"
		}
		l3 = plain(what + " " + pct0(frac) + "  " + mbps(pr.Rate))
		eta := ""
		if pr.ETA > 0 {
			eta = clock(pr.ETA)
		}
		bw := max(0, inner-6)
		done := int(frac*float64(bw) + 0.5)
		l4 = []seg{{strings.Repeat("█", done), p.barDone}, {strings.Repeat("░", bw-done), p.barTodo}, {fmt.Sprintf(" %5s", eta), paint{}}}
		l5 = dim(cardLine(v.LastLine))
	case lines.StateBooting, lines.StateRegister:
		l2 = plain(board)
		l3 = plain("boot: " + v.Stage)
		if v.State == lines.StateRegister {
			l3 = plain("getting its serial")
			if v.Stage == lines.StageIdentity {
				l3 = plain("checking its identity")
			}
		}
		l4 = dim(stageInfo(d.Timeline, now))
		l5 = dim(cardLine(v.LastLine))
	case lines.StatePass:
		l2 = plain(board)
		l3 = []seg{{"serial " + v.Serial, p.ok}}
		l4 = plain("assertion recorded")
		if v.Duplicate {
			l4 = []seg{{"⚠ serial signed before", p.warn}}
		}
		l5 = []seg{{"→ remove board", p.ok}}
	case lines.StateFail:
		r := lines.ReasonFor(v.Reason)
		l2 = plain(board)
		l3 = []seg{{v.Reason, p.bad}}
		l4 = plain(r.What)
		l5 = []seg{{"→ " + r.Do, p.bold}}
	}
	if v.HWSerial == "" && (v.State == lines.StateFail || v.State == lines.StatePass) {
		l2 = dim("no board")
	}
	fr, frame := frameThin, p.border[v.State]
	if selected {
		fr, frame = frameThick, p.accent
	}
	var out [cardHeight]string
	out[0] = frame.on(fr[0] + strings.Repeat(fr[4], w-2) + fr[1])
	side := frame.on(fr[5])
	for i, l := range [][]seg{l1, l2, l3, l4, l5} {
		out[i+1] = side + " " + line(inner, l...) + " " + side
	}
	out[cardHeight-1] = frame.on(fr[2] + strings.Repeat(fr[4], w-2) + fr[3])
	return out
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
	return "stage " + strconv.Itoa(n) + ", for " + clock(now.Sub(last))
}

// syslogPrefix is a journal line's "Feb 10 10:03:10 host " prefix.
var syslogPrefix = regexp.MustCompile(`^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \S+ `)

// cardLine is a console line as a card shows it: printable, without
// leading blanks or a journal prefix.
func cardLine(s string) string {
	s = strings.TrimSpace(sanitize(s))
	return syslogPrefix.ReplaceAllString(s, "")
}

func pct0(x float64) string { return strconv.Itoa(int(100*x)) + "%" }
