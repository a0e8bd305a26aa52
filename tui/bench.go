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

// Card geometry: cards shrink (fewer lines, then narrower) before any slot
// leaves the screen. Each size is a height (frame included) and the width
// it needs at least; the grid has 1 to maxColumns columns.
type cardSize struct{ h, minW int }

var cardSizes = []cardSize{{7, 26}, {5, 20}, {4, 18}, {3, 16}}

const (
	cardHeight   = 7 // the largest card
	maxColumns   = 12
	maxCardWidth = 40 // wider only when there are fewer slots than columns
)

// BenchKeyMap are the bench view's keys.
type BenchKeyMap struct {
	Up, Down, Left, Right key.Binding
	Enter, Retry, Disable key.Binding
	EndBatch              key.Binding
	Batch, Search, Help   key.Binding
	Quit                  key.Binding
	// Next jumps to the next slot that needs the operator (a FAIL, then a
	// PASS whose board waits); Clear clears a removed board's FAIL.
	Next, Clear  key.Binding
	PgUp, PgDown key.Binding
}

// ShortHelp is the footer's help.
func (k BenchKeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Enter, k.Next, k.Retry, k.Disable, k.Batch, k.Search, k.Help, k.Quit}
}

// FullHelp is the help view's.
func (k BenchKeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{{k.Up, k.Down, k.Left, k.Right, k.PgUp, k.PgDown}, {k.Enter, k.Next, k.Retry, k.Disable, k.Clear, k.EndBatch}, {k.Batch, k.Search, k.Help, k.Quit}}
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
		Enter: k.Enter, Retry: k.Retry, Disable: k.Disable, EndBatch: k.EndBatch, Batch: k.Batch, Search: k.Search, Help: k.Help, Quit: k.Quit,
		Next:   key.NewBinding(key.WithKeys("n", "tab"), key.WithHelp("n", "next to act on")),
		Clear:  key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "clear a removed FAIL")),
		PgUp:   key.NewBinding(key.WithKeys("pgup"), key.WithHelp("pgup", "page up")),
		PgDown: key.NewBinding(key.WithKeys("pgdown"), key.WithHelp("pgdn", "page down"))}}
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

// layout returns the grid for a height of h lines: its columns, card
// width and size, and how many rows of cards show. It takes the largest
// card that shows every slot, the fewest columns (widest cards, up to
// maxCardWidth) for it;
// when even the smallest cannot, the smallest, as many columns as fit,
// and the grid scrolls.
func (b Bench) layout(h int) (cols, cardW int, size cardSize, rows int) {
	n := max(1, len(b.s.order))
	w := b.c.Width
	for _, cs := range cardSizes {
		most := max(1, min(w/cs.minW, maxColumns, n))
		for c := 1; c <= most; c++ {
			if (n+c-1)/c*cs.h <= h && (w/c <= maxCardWidth || c == most) {
				return c, w / c, cs, (n + c - 1) / c
			}
		}
	}
	// Not every slot fits: it scrolls anyway, so each card keeps its
	// instruction (two lines) rather than shrinking to one.
	cs := cardSizes[len(cardSizes)-2]
	if h < cs.h {
		cs = cardSizes[len(cardSizes)-1]
	}
	cols = max(1, min(w/cs.minW, maxColumns, n))
	return cols, w / cols, cs, max(1, h/cs.h)
}

// gridHeight is the height the grid may use: the screen less the header,
// the footer and the lines' stop banners.
func (b Bench) gridHeight() int {
	h := b.c.Height - headerHeight - footerHeight
	if b.stopBanner() != "" {
		h--
	}
	return max(1, h)
}

func (b *Bench) scroll() {
	cols, _, _, rows := b.layout(b.gridHeight())
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
	cols, _, _, rows := b.layout(b.gridHeight())
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
	case key.Matches(km, b.KeyMap.PgUp):
		b.sel = max(b.sel%cols, b.sel-rows*cols)
	case key.Matches(km, b.KeyMap.PgDown):
		b.sel = min(n-1, b.sel+rows*cols)
	case key.Matches(km, b.KeyMap.Next):
		if i, ok := b.nextToActOn(); ok {
			b.sel = i
		}
	case key.Matches(km, b.KeyMap.Clear):
		if d := b.s.byID[b.s.order[b.sel]]; d.removedFail() {
			d.Last.Cleared = true
		}
	}
	b.scroll()
	return b, nil
}

// nextToActOn is the slot after the selection that needs the operator: a
// FAIL first (a removed board's too), else a PASS whose board waits.
func (b Bench) nextToActOn() (int, bool) {
	n := len(b.s.order)
	for _, want := range []string{lines.StateFail, lines.StatePass} {
		for k := 1; k <= n; k++ {
			i := (b.sel + k) % n
			if st, _ := b.s.byID[b.s.order[i]].shown(); st == want {
				return i, true
			}
		}
	}
	return 0, false
}

// View renders the lines' stop banners and the visible rows of cards in h
// lines, each line exactly the terminal's width.
func (b Bench) View(h int) string {
	w := b.c.Width
	p := b.c.Styles.paints()
	if len(b.s.order) == 0 {
		return line(w, seg{"no slots configured", p.dim})
	}
	var out strings.Builder
	if banner := b.stopBanner(); banner != "" {
		out.WriteString(p.stopped.on(line(w, seg{banner, paint{}})))
		h--
	}
	cols, cardW, size, rows := b.layout(h)
	pad := strings.Repeat(" ", max(0, w-cols*cardW))
	n := len(b.s.order)
	cards := make([][]string, cols)
	for r := b.top; r < b.top+rows && r*cols < n; r++ {
		k := 0
		for c := range cols {
			i := r*cols + c
			if i >= n {
				break
			}
			cards[c] = b.card(b.s.byID[b.s.order[i]], cardW, size.h, i == b.sel)
			k++
		}
		blank := strings.Repeat(" ", (cols-k)*cardW)
		for l := range size.h {
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

// scrollInfo says, when not every slot shows, what is off screen: the
// verdicts above and below, and the rows shown.
func (b Bench) scrollInfo() string {
	cols, _, _, rows := b.layout(b.gridHeight())
	total := (len(b.s.order) + cols - 1) / cols
	if total <= rows {
		return ""
	}
	count := func(from, to int) string {
		var fail, pass int
		for i := from; i < min(to, len(b.s.order)); i++ {
			switch st, _ := b.s.byID[b.s.order[i]].shown(); st {
			case lines.StateFail:
				fail++
			case lines.StatePass:
				pass++
			}
		}
		var parts []string
		if fail > 0 {
			parts = append(parts, strconv.Itoa(fail)+" FAIL")
		}
		if pass > 0 {
			parts = append(parts, strconv.Itoa(pass)+" PASS")
		}
		return strings.Join(parts, " ")
	}
	var parts []string
	if b.top > 0 {
		parts = append(parts, strings.TrimSpace(count(0, b.top*cols)+" ↑"))
	}
	parts = append(parts, "rows "+strconv.Itoa(b.top+1)+"-"+strconv.Itoa(min(total, b.top+rows))+" of "+strconv.Itoa(total))
	if b.top+rows < total {
		parts = append(parts, strings.TrimSpace(count((b.top+rows)*cols, len(b.s.order))+" ↓"))
	}
	return strings.Join(parts, " · ")
}

// stoppedLine is a line that cannot register boards now, and why.
type stoppedLine struct{ line, why string }

// stoppedLines are the lines whose vault cannot sign now.
func (b Bench) stoppedLines() []stoppedLine {
	var out []stoppedLine
	for _, h := range b.s.health {
		if why := lineStop(h); why != "" {
			out = append(out, stoppedLine{h.Line, why})
		}
	}
	return out
}

// stopBanner is the one row that says which lines are stopped ("" when
// none): one line in full, several folded together.
func (b Bench) stopBanner() string {
	st := b.stoppedLines()
	switch len(st) {
	case 0:
		return ""
	case 1:
		if h := b.health(st[0].line); imageRefused(h) {
			return " ■ LINE " + strings.ToUpper(st[0].line) + " HELD: " + st[0].why + " - no board is touched: " + h.Image.Summary()
		}
		return " ■ LINE " + strings.ToUpper(st[0].line) + " STOPPED: " + st[0].why + " - boards wait"
	}
	var parts []string
	for _, l := range st {
		parts = append(parts, strings.ToUpper(l.line)+": "+l.why)
	}
	return " ■ " + strconv.Itoa(len(st)) + " LINES STOPPED (boards wait): " + strings.Join(parts, " · ")
}

// lineStop says why a line cannot register its boards ("" when it can).
func lineStop(h lines.LineHealth) string {
	switch {
	case imageRefused(h):
		return "IMAGE REFUSED, " + lines.ImageCauseFor(h.Image.Cause).Words
	case h.ProxyStopped != "":
		return "its recording proxy stopped"
	case h.VaultChecked.IsZero() || h.VaultOK:
		return ""
	case h.VaultDatabaseDown:
		return "vault database down"
	case h.VaultKeyRefused:
		return "vault refuses the api-key"
	}
	return "vault unreachable"
}

// imageRefused reports whether the image identity gate holds the line.
func imageRefused(h lines.LineHealth) bool { return h.Image != nil && !h.Image.Pass }

// health is a line's health ("" fields when unknown).
func (b Bench) health(line string) lines.LineHealth {
	for _, h := range b.s.health {
		if h.Line == line {
			return h
		}
	}
	return lines.LineHealth{Line: line}
}

// Frame characters: a thin rounded frame; a heavy one on a PASS tile; a
// FAIL tile's top and bottom hatched, so a FAIL is told from a PASS without
// colour too; double lines around the selected working card.
var (
	frameThin  = [6]string{"╭", "╮", "╰", "╯", "─", "│"}
	frameThick = [6]string{"┏", "┓", "┗", "┛", "━", "┃"}
	frameFail  = [6]string{"▚", "▚", "▚", "▚", "▚", "▌"}
	// The selected working card: double lines, unlike any tile.
	frameSelect = [6]string{"╔", "╗", "╚", "╝", "═", "║"}
)

// shown is the state a slot's card shows: a failed board that was pulled
// stays FAIL (removed) until the next board or the operator clears it.
func (d *slotData) shown() (state string, removed bool) {
	if d.removedFail() {
		return lines.StateFail, true
	}
	return d.View.State, false
}

// removedFail reports a slot emptied of a failed board not cleared yet.
func (d *slotData) removedFail() bool {
	return d.View.State == lines.StateIdle && d.Last != nil && d.Last.State == lines.StateFail && !d.Last.Cleared
}

// spaced is a verdict word in spaced capitals, the widest it fits.
func spaced(word string, w int) string {
	wide := strings.Join(strings.Split(word, ""), " ")
	if cellWidth(wide) <= w {
		return wide
	}
	return word
}

// card renders one slot in a frame of width w and height h (a cardSize):
// the largest shows id, badge and elapsed time; board and serial; stage;
// progress or reason; what to do. Smaller ones keep the first line and
// what to do. A PASS or FAIL is a tile: the whole card in its colour, the
// verdict in spaced capitals.
func (b Bench) card(d *slotData, w, h int, selected bool) []string {
	p := b.c.Styles.paints()
	v := d.View
	state, removed := d.shown()
	hl := b.health(v.Line)
	inner := w - 4 // frame and padding
	now := b.c.Now()
	var elapsed string
	switch {
	case removed:
		if !d.Last.Started.IsZero() && !d.Last.At.Before(d.Last.Started) {
			elapsed = clock(d.Last.At.Sub(d.Last.Started))
		}
	case !v.StartedAt.IsZero() && state != lines.StateIdle && state != lines.StateDisabled:
		end := now
		if !d.Ended.IsZero() && (state == lines.StatePass || state == lines.StateFail) {
			end = d.Ended
		}
		elapsed = clock(end.Sub(v.StartedAt))
	}
	tile := state == lines.StatePass || state == lines.StateFail
	text, bold := paint{}, p.bold
	switch state {
	case lines.StatePass:
		text, bold = p.passTile, p.passTileBold
	case lines.StateFail:
		text, bold = p.failTile, p.failTileBold
	}
	plain := func(s string) []seg { return []seg{{s, text}} }
	dim := func(s string) []seg {
		if tile {
			return plain(s)
		}
		return []seg{{s, p.dim}}
	}
	strong := func(s string) []seg { return []seg{{s, bold}} }

	id := v.ID
	if selected {
		id = "▶" + id
	}
	badge := DarkPalette.badge(state)
	badgePaint := p.badge[state]
	if state == lines.StateIdle && imageRefused(hl) {
		// A held line's slot is not empty and waiting: it must not be
		// used, so it reads as a failure from across the bench.
		badge.Glyph, badge.Word, badgePaint = "✘", "HELD", p.badge[lines.StateFail]
	}
	var l1 []seg
	if tile {
		word := badge.Glyph + " " + spaced(badge.Word, inner-cellWidth(id)-len(elapsed)-6) + " " + badge.Glyph
		l1 = []seg{{id + "  ", bold}, {word, bold}}
	} else {
		l1 = []seg{{id, p.bold}, {" ", paint{}}, {" " + badge.Glyph + " " + badge.Word + " ", badgePaint}}
	}
	used := 0
	for _, sg := range l1 {
		used += cellWidth(sg.text)
	}
	if gap := inner - used - len(elapsed); elapsed != "" && gap >= 1 {
		l1 = append(l1, seg{strings.Repeat(" ", gap), text}, seg{elapsed, text})
		if !tile {
			l1[len(l1)-1].p = p.dim
		}
	}

	// The other lines: board, main, detail, what to do.
	var l2, l3, l4, l5 []seg
	board := "board " + v.HWSerial
	if v.Attempt > 1 {
		board += " (try " + strconv.Itoa(v.Attempt) + ")"
	}
	stop := lineStop(hl)
	switch state {
	case lines.StateIdle:
		l2 = dim("no board")
		if last := d.Last; last != nil {
			if last.State == lines.StatePass {
				l3 = dim("last: ✔ PASS " + last.HWSerial + " " + last.Serial)
			} else {
				l3 = dim("last: ✘ FAIL " + last.HWSerial + " " + last.Reason)
			}
			l4 = dim("at " + last.At.Local().Format("15:04:05"))
		}
		l5 = dim("insert a board")
		if stop != "" {
			l5 = []seg{{"waiting for the vault", p.warn}}
		}
		if imageRefused(hl) {
			// The line is held: its boards are not touched.
			l2 = []seg{{"✘ IMAGE REFUSED", p.warn}}
			l3 = plain(lines.ImageCauseFor(hl.Image.Cause).Words)
			l4 = dim(cardLine(v.Detail))
			l5 = []seg{{"do not insert boards", p.warn}}
		}
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
		if state == lines.StateRegister {
			l3 = plain("getting its serial")
			switch v.Stage {
			case lines.StageIdentity:
				l3 = plain("checking its identity")
			case lines.StageRecover:
				l3 = plain("reading a serial signed while stopped")
			}
			if stop != "" {
				l3 = []seg{{"waiting for the vault", p.warn}}
			}
		}
		l4 = dim(stageInfo(d.Timeline, now))
		l5 = dim(cardLine(v.LastLine))
	case lines.StatePass:
		l2 = plain(board)
		l3 = strong("serial " + v.Serial)
		l4 = plain("assertion recorded")
		if v.Duplicate {
			l4 = strong("⚠ serial signed before")
		}
		l5 = strong(lines.Instruction(true, "", v.Attempt, hl.Trays))
	case lines.StateFail:
		reason, hw, attempt := v.Reason, v.HWSerial, v.Attempt
		if removed {
			reason, hw = d.Last.Reason, d.Last.HWSerial
			attempt = d.Last.Attempt
		}
		r := lines.ReasonFor(reason)
		l2 = plain("board " + hw)
		l3 = strong(reason)
		l4 = plain(r.What)
		if removed {
			l2 = plain("board " + hw + " removed")
			l4 = plain("c clears · " + r.What)
		}
		do := lines.Instruction(false, reason, attempt, hl.Trays)
		if removed {
			// The board is out of the slot: r has nothing to retry.
			switch lines.ReasonFor(reason).Then(attempt) {
			case lines.ThenRetry:
				do = "→ reinsert board" // a board put back is worked again
			case lines.ThenFix:
				do += ", reinsert"
			}
		}
		l5 = strong(do)
	}
	if v.HWSerial == "" && !removed && (state == lines.StateFail || state == lines.StatePass) {
		l2 = dim("no board")
	}
	var body [][]seg
	switch h - 2 {
	case 5:
		body = [][]seg{l1, l2, l3, l4, l5}
	case 3:
		main := l3
		if state == lines.StateFlashing {
			main = l4 // the bar says more than the words
		}
		if state == lines.StateIdle {
			main = l2
		}
		body = [][]seg{l1, main, l5}
	case 2:
		body = [][]seg{l1, l5}
		if working(state) {
			body[1] = l3
		}
	default:
		one := append([]seg(nil), l1[:min(len(l1), 3)]...)
		if tile {
			// The instruction only if it fits whole: a cut one says nothing.
			head := id + " " + badge.Glyph + " " + badge.Word
			one = []seg{{head, bold}}
			if do := segText(l5); cellWidth(head)+1+cellWidth(do) <= inner {
				one = append(one, seg{" " + do, bold})
			}
		}
		body = [][]seg{one}
	}

	fr, frame := frameThin, p.border
	switch {
	case state == lines.StateFail:
		fr, frame = frameFail, p.failTile
	case state == lines.StatePass:
		fr, frame = frameThick, p.passTile
	case selected:
		fr, frame = frameSelect, p.selectFrame
	case state == lines.StateIdle || state == lines.StateDisabled || state == lines.StateStopped:
		frame = p.dim
	}
	if tile && selected {
		frame = text // the ▶ marks it; the frame keeps the tile's colour
	}
	out := make([]string, h)
	out[0] = frame.on(fr[0] + strings.Repeat(fr[4], w-2) + fr[1])
	side := frame.on(fr[5])
	pad := text.on(" ")
	for i, l := range body {
		if tile {
			// Every cell of a tile is in its paint, blanks included.
			for k := range l {
				if l[k].p == (paint{}) {
					l[k].p = text
				}
			}
			out[i+1] = side + pad + tileLine(inner, text, l...) + pad + side
			continue
		}
		out[i+1] = side + " " + line(inner, l...) + " " + side
	}
	out[h-1] = frame.on(fr[2] + strings.Repeat(fr[4], w-2) + fr[3])
	return out
}

// segText is the text of a line's segments.
func segText(l []seg) string {
	var b strings.Builder
	for _, s := range l {
		b.WriteString(s.text)
	}
	return b.String()
}

// tileLine is line, with the blanks that fill it in the tile's paint.
func tileLine(w int, fill paint, segs ...seg) string {
	used := 0
	for _, s := range segs {
		used += cellWidth(cut(s.text, w-used))
		if used >= w {
			break
		}
	}
	if used < w {
		segs = append(segs, seg{strings.Repeat(" ", w-used), fill})
	}
	return line(w, segs...)
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
