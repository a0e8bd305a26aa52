package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
)

// FactoryRecords is what the supervisors' board reads (*ledger.Ledger on a
// factory ledger is one).
type FactoryRecords interface {
	FactoryReport(ctx context.Context, f ledger.FactoryFilter) (ledger.FactoryReport, error)
}

// SuperviseOptions configure the supervisors' board.
type SuperviseOptions struct {
	Records FactoryRecords
	// Where names the factory ledger (without its secrets).
	Where  string
	Filter ledger.FactoryFilter
	// Every is how often the figures are read again (default 2 s).
	Every  time.Duration
	Logger zerolog.Logger
	Now    func() time.Time
}

// Supervise is `flashstation supervise`: a read-only board of lines x
// benches with each cell's figures, the benches that went silent and the
// serials two benches recorded; enter on a cell shows that bench's slots
// on that line. It reads the factory ledger on a timer, off the
// interface's goroutine, and never writes.
type Supervise struct {
	c    Common
	o    SuperviseOptions
	keys superviseKeys

	rep      *ledger.FactoryReport
	err      error     // the last read's failure (the figures shown are older)
	readAt   time.Time // when rep was read
	row, col int       // the selected line (row) and bench (col; 0: all benches)
	drill    bool
	// reading: a read is in flight (a slow factory ledger is not asked
	// again until it answers).
	reading bool
}

type superviseKeys struct {
	Up, Down, Left, Right, Enter, Back, Quit, ForceQuit key.Binding
}

// superviseReportMsg carries a read of the factory ledger.
type superviseReportMsg struct {
	rep ledger.FactoryReport
	err error
	at  time.Time
}

type superviseTickMsg struct{}

// NewSupervise makes the board.
func NewSupervise(ctx context.Context, o SuperviseOptions) *Supervise {
	if o.Every <= 0 {
		o.Every = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	km := DefaultKeyMap()
	return &Supervise{
		c: Common{Ctx: ctx, Width: 80, Height: 24, Styles: DefaultStyles(), Keys: km, Log: o.Logger, Now: o.Now},
		o: o,
		keys: superviseKeys{Up: km.Up, Down: km.Down, Left: km.Left, Right: km.Right, Enter: km.Enter, Back: km.Back,
			Quit: km.Quit, ForceQuit: km.ForceQuit},
	}
}

func (m *Supervise) read() tea.Cmd {
	m.reading = true
	ctx, rec, f, now := m.c.Ctx, m.o.Records, m.o.Filter, m.o.Now
	return func() tea.Msg {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		rep, err := rec.FactoryReport(rctx, f)
		return superviseReportMsg{rep: rep, err: err, at: now()}
	}
}

func (m *Supervise) tick() tea.Cmd {
	return tea.Tick(m.o.Every, func(time.Time) tea.Msg { return superviseTickMsg{} })
}

// Init reads the figures and starts the timer.
func (m *Supervise) Init() tea.Cmd { return tea.Batch(m.read(), m.tick()) }

// Update handles a message: the root of the board (size, keys, reads).
func (m *Supervise) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.c.Width, m.c.Height = msg.Width, msg.Height
	case superviseTickMsg:
		if m.reading {
			return m, m.tick()
		}
		return m, tea.Batch(m.read(), m.tick())
	case superviseReportMsg:
		m.reading = false
		if msg.err != nil {
			m.err = msg.err
			m.c.Log.Warn().Err(msg.err).Msg("factory ledger read failed")
			break
		}
		m.rep, m.err, m.readAt = &msg.rep, nil, msg.at
		m.clamp()
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, m.keys.ForceQuit), key.Matches(msg, m.keys.Quit):
			return m, tea.Quit
		case key.Matches(msg, m.keys.Back):
			m.drill = false
		case key.Matches(msg, m.keys.Enter):
			m.drill = m.rep != nil && len(m.rep.Lines) > 0
		case key.Matches(msg, m.keys.Up):
			m.row--
		case key.Matches(msg, m.keys.Down):
			m.row++
		case key.Matches(msg, m.keys.Left):
			m.col--
		case key.Matches(msg, m.keys.Right):
			m.col++
		}
		m.clamp()
	}
	return m, nil
}

func (m *Supervise) clamp() {
	if m.rep == nil {
		m.row, m.col = 0, 0
		return
	}
	m.row = max(0, min(m.row, len(m.rep.Lines)-1))
	m.col = max(0, min(m.col, len(m.rep.Stations)))
}

// View renders the board.
func (m *Supervise) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	return v
}

// boardCell is a supervisors' board cell's width; boardName the line names'.
const (
	boardCell = 22
	boardName = 16
)

// Render is the board as text, exactly the terminal's size.
func (m *Supervise) Render() string {
	st, w, h := m.c.Styles, m.c.Width, m.c.Height
	var rows []string
	title := " FLASHSTATION SUPERVISOR · " + m.o.Where
	right := "read-only"
	if !m.readAt.IsZero() {
		right = "updated " + m.readAt.Local().Format("15:04:05") + fmt.Sprintf(" (every %s) ", m.o.Every)
	}
	rows = append(rows, st.Title.Render(spread(title, right, w)))
	if m.err != nil {
		msg := "✘ FACTORY LEDGER UNREACHABLE: " + m.err.Error()
		if !m.readAt.IsZero() {
			msg += " - figures of " + m.readAt.Local().Format("15:04:05")
		}
		rows = append(rows, st.Bad.Render(fit(msg, w)))
	}
	if m.rep == nil {
		rows = append(rows, fit(" reading the factory ledger...", w))
		return m.frame(rows, w, h)
	}
	rep := m.rep
	t := rep.Total
	rows = append(rows, fit(fmt.Sprintf(" all lines: %d units · pass %d · fail %d · error %d · running %d · yield %s · FPY %s · %s passes/h",
		t.Units, t.Passed, t.Failed, t.Errors, t.InProgress, ledger.Percent(t.Yield), ledger.Percent(t.FirstPassYield),
		ledger.Rate(t.UnitsPerHour)), w))
	if silent := m.silent(); silent != "" {
		rows = append(rows, st.Warn.Render(fit(" ⚠ SILENT: "+silent, w)))
	}
	if n := len(rep.Duplicates); n > 0 {
		rows = append(rows, st.Bad.Render(fit(fmt.Sprintf(" ⚠ %s RECORDED ON TWO BENCHES: %s", plural(n, "serial or device key", "serials or device keys"), dupList(rep.Duplicates)), w)))
	}
	rows = append(rows, "")
	if m.drill {
		rows = append(rows, m.drillDown(w)...)
	} else {
		rows = append(rows, m.board(w)...)
	}
	return m.frame(rows, w, h)
}

// frame pads the rows to the screen and puts the keys in the last row.
func (m *Supervise) frame(rows []string, w, h int) string {
	keys := " ↑↓←→ select · enter: the bench's slots · esc: back · q: quit"
	if len(rows) > h-1 {
		rows = rows[:h-1]
	}
	for len(rows) < h-1 {
		rows = append(rows, "")
	}
	for i := range rows {
		rows[i] = fit(rows[i], w)
	}
	return strings.Join(append(rows, m.c.Styles.Dim.Render(fit(keys, w))), "\n")
}

// silent lists the benches that stopped reaching the factory ledger.
func (m *Supervise) silent() string {
	var out []string
	for _, b := range m.rep.Stations {
		if !b.Silent {
			continue
		}
		if b.SeenAt.IsZero() {
			out = append(out, b.Station+" (never seen)")
		} else {
			out = append(out, fmt.Sprintf("%s since %s", b.Station, b.SeenAt.Local().Format("15:04:05")))
		}
	}
	return strings.Join(out, ", ")
}

func dupList(ds []ledger.FactoryDuplicate) string {
	var out []string
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s %s (%s)", d.Kind, d.Value, strings.Join(d.Stations, "+")))
	}
	return strings.Join(out, "; ")
}

// cell is one board cell: units, yield and rate, coloured by the yield.
func (m *Supervise) cell(s ledger.Stats, selected bool) string {
	st := m.c.Styles
	if s.Units == 0 {
		c := fit("   —", boardCell)
		if selected {
			return st.Selected.Render(c)
		}
		return st.Dim.Render(c)
	}
	rate := ledger.NoData
	if s.UnitsPerHour != nil {
		rate = fmt.Sprintf("%.0f", *s.UnitsPerHour)
	}
	text := fmt.Sprintf(" %4d %6s %5s/h", s.Units, ledger.Percent(s.Yield), rate)
	if s.InProgress > 0 {
		text += fmt.Sprintf(" ▸%d", s.InProgress)
	}
	text = fit(text, boardCell)
	switch {
	case selected:
		return st.Selected.Render(text)
	case s.Yield != nil && *s.Yield < 0.9:
		return st.Bad.Render(text)
	case s.Yield != nil && *s.Yield < 0.97:
		return st.Warn.Render(text)
	}
	return text
}

// board is the lines x benches table.
func (m *Supervise) board(w int) []string {
	st, rep := m.c.Styles, m.rep
	head := fit(" line", boardName) + fit(" all benches", boardCell)
	for _, b := range rep.Stations {
		name := " " + b.Station
		if b.Silent {
			name += " SILENT"
		}
		head += fit(name, boardCell)
	}
	rows := []string{st.Bold.Render(fit(head, w)), st.Dim.Render(fit(fmt.Sprintf("%*s", boardName, "")+" units  yield  passes (▸ running)", w))}
	if len(rep.Lines) == 0 {
		return append(rows, " no unit in this window yet")
	}
	for i, l := range rep.Lines {
		row := fit(" "+l.Line, boardName) + m.cell(l.Stats, i == m.row && m.col == 0)
		for j, b := range rep.Stations {
			s, ok := m.lineBench(l.Line, b.Station)
			if !ok {
				row += st.Dim.Render(fit("   ·", boardCell))
				continue
			}
			row += m.cell(s, i == m.row && m.col == j+1)
		}
		rows = append(rows, row)
	}
	rows = append(rows, "")
	// The selected cell's failures.
	s, name := m.selected()
	rows = append(rows, st.Section.Render(name))
	rows = append(rows, fmt.Sprintf(" boards %d (finished %d, passed %d) · first-pass yield %s · median flash %.1fs, boot %.1fs",
		s.Boards, s.BoardsFinished, s.BoardsPassed, ledger.Percent(s.FirstPassYield), s.MedianFlashSecs, s.MedianBootSecs))
	rows = append(rows, m.pareto(s, 5)...)
	return rows
}

// lineBench is one bench's figures on one line.
func (m *Supervise) lineBench(line, station string) (ledger.Stats, bool) {
	for _, f := range m.rep.LineBench {
		if f.Line == line && f.Station == station {
			return f.Stats, true
		}
	}
	return ledger.Stats{}, false
}

// selected is the selected cell's figures and its name.
func (m *Supervise) selected() (ledger.Stats, string) {
	l := m.rep.Lines[m.row]
	if m.col == 0 {
		return l.Stats, "line " + l.Line + ", all benches"
	}
	b := m.rep.Stations[m.col-1]
	s, _ := m.lineBench(l.Line, b.Station)
	return s, "line " + l.Line + ", bench " + b.Station
}

func (m *Supervise) pareto(s ledger.Stats, n int) []string {
	var rows []string
	for i, r := range s.Pareto {
		if i == n {
			break
		}
		rows = append(rows, fmt.Sprintf("  %5d  %-22s %s", r.Count, r.Reason, lines.ReasonFor(r.Reason).What))
	}
	if len(rows) == 0 {
		rows = append(rows, "  no failure")
	}
	return append([]string{" failures:"}, rows...)
}

// drillDown is the selected bench's slots on the selected line (or the
// line's slots on every bench).
func (m *Supervise) drillDown(w int) []string {
	st := m.c.Styles
	s, name := m.selected()
	rows := []string{st.Section.Render(name), ""}
	rows = append(rows, st.Bold.Render(fit(fmt.Sprintf(" %-12s %6s %6s %8s %7s", "slot", "units", "failed", "fail rate", "boards"), w)))
	if len(s.Slots) == 0 {
		rows = append(rows, " no finished unit in this window")
	}
	for _, sl := range s.Slots {
		r := fit(fmt.Sprintf(" %-12s %6d %6d %8s %7d", sl.Slot, sl.Units, sl.Failed, pct(sl.FailRate), sl.FailedBoards), w)
		if sl.Suspect {
			r = st.Bad.Render(fit(strings.TrimRight(r, " ")+"  SUSPECT: check its cable, hub port, console", w))
		}
		rows = append(rows, r)
	}
	rows = append(rows, "")
	rows = append(rows, fmt.Sprintf(" units %d · pass %d · fail %d · error %d · aborted %d · yield %s · FPY %s · %s passes/h",
		s.Units, s.Passed, s.Failed, s.Errors, s.Aborted, ledger.Percent(s.Yield), ledger.Percent(s.FirstPassYield), ledger.Rate(s.UnitsPerHour)))
	return append(rows, m.pareto(s, 8)...)
}
