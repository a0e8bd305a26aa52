package tui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
)

const (
	headerHeight = 2
	footerHeight = 1
	// eventWindow is how long the event reader gathers events into one
	// message after the first: the screen is redrawn at most 1/eventWindow
	// times a second whatever the event rate.
	eventWindow = 50 * time.Millisecond
	tickEvery   = time.Second
	statsEvery  = 5 * time.Second
)

// Options configure the interface.
type Options struct {
	Station Station
	Records Records
	// Events is the station's event stream (lines.Pipeline.Subscribe);
	// Done, when closed, says every line finished its batch.
	Events <-chan lines.Event
	Done   <-chan struct{}

	StationID string
	// Operator is who is at the bench; without one the interface asks for
	// a name or a badge scan before the bench shows, and gives it to the
	// station (Station.SetOperator).
	Operator  string
	ExportDir string
	Logger    zerolog.Logger
	Now       func() time.Time // default time.Now
	// Tick schedules the next clock tick (default tea.Tick); tests that
	// step the interface themselves give one that schedules nothing.
	Tick   func(d time.Duration, fn func(time.Time) tea.Msg) tea.Cmd
	Styles *Styles // default DefaultStyles
	Keys   *KeyMap // default DefaultKeyMap
	// Width and Height are the size before the first WindowSizeMsg.
	Width, Height int
	// Bell rings the terminal's bell on every FAIL.
	Bell bool
}

type screen int

const (
	screenBench screen = iota
	screenDetail
	screenBatch
	screenQA
	screenHelp
	screenOperator // who is at the bench, asked before the bench shows
)

// Messages of the root.
type (
	eventsMsg struct {
		events []lines.Event
		closed bool
	}
	tickMsg   time.Time
	doneMsg   struct{}
	actionMsg struct{ text string }
)

// Model is the root of the interface: it alone handles the terminal's
// size, quitting (asking first while boards are in work), switching views
// and the station's events.
type Model struct {
	// ownStyles: no styles were given, so the terminal's background
	// chooses the light or the dark palette.
	ownStyles bool
	c         *Common
	s         *store
	opts      Options
	screen    screen
	prev      screen // the screen help returns to

	bench  Bench
	detail Detail
	batch  BatchView
	qa     QA
	help   HelpView
	op     OperatorPrompt

	// pending is the question the operator is asked (quit while boards
	// are in work, end a batch, retry a PASS, disable a board in work):
	// the next key answers it.
	pending   *confirm
	status    string
	statusAt  time.Time
	stats     *ledger.Stats // header counts
	lastStats time.Time
	quitting  bool
}

// confirm is a y/n question: y runs yes, any other key cancels and says
// no in the footer.
type confirm struct {
	prompt func() string // asked again at each redraw (counts change)
	yes    func() tea.Cmd
	no     string
}

// ask puts a question to the operator.
func (m *Model) ask(prompt func() string, yes func() tea.Cmd, no string) {
	m.pending = &confirm{prompt: prompt, yes: yes, no: no}
}

// Asking reports whether a question waits for the operator's answer.
func (m *Model) Asking() bool { return m.pending != nil }

// New returns the interface for a station.
func New(ctx context.Context, o Options) *Model {
	if o.Tick == nil {
		o.Tick = tea.Tick
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ownStyles := o.Styles == nil // the terminal's background picks them
	if o.Styles == nil {
		o.Styles = DefaultStyles()
	}
	if o.Keys == nil {
		o.Keys = DefaultKeyMap()
	}
	if o.Width == 0 {
		o.Width, o.Height = 80, 24
	}
	c := &Common{Ctx: ctx, Width: o.Width, Height: o.Height, Styles: o.Styles, Keys: o.Keys, Log: o.Logger, Now: o.Now,
		Station: o.Station, Records: o.Records, StationID: o.StationID, Operator: o.Operator, ExportDir: o.ExportDir}
	s := newStore(o.Station.Slots())
	s.health = o.Station.Health()
	m := &Model{c: c, s: s, opts: o, ownStyles: ownStyles}
	m.bench = NewBench(c, s)
	m.detail = NewDetail(c, s)
	m.batch = NewBatchView(c, s)
	m.qa = NewQA(c)
	m.help = NewHelpView(c, m.bench.KeyMap, m.detail.KeyMap, m.batch.KeyMap, m.qa.KeyMap)
	m.op = NewOperatorPrompt(c)
	if strings.TrimSpace(o.Operator) == "" {
		m.screen = screenOperator
		m.op, _ = m.op.Focus()
	}
	return m
}

// waitEvents reads the next events: it blocks for one, then gathers what
// else arrives within eventWindow, so a busy bench costs a bounded number
// of redraws.
func waitEvents(ch <-chan lines.Event) tea.Cmd {
	if ch == nil {
		return nil
	}
	return func() tea.Msg {
		e, ok := <-ch
		if !ok {
			return eventsMsg{closed: true}
		}
		msg := eventsMsg{events: []lines.Event{e}}
		t := time.NewTimer(eventWindow)
		defer t.Stop()
		for len(msg.events) < 8192 {
			select {
			case e, ok := <-ch:
				if !ok {
					msg.closed = true
					return msg
				}
				msg.events = append(msg.events, e)
			case <-t.C:
				return msg
			}
		}
		return msg
	}
}

func waitDone(done <-chan struct{}) tea.Cmd {
	if done == nil {
		return nil
	}
	return func() tea.Msg {
		<-done
		return doneMsg{}
	}
}

func (m *Model) tick() tea.Cmd {
	return m.opts.Tick(tickEvery, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// Init starts reading events and the clock.
func (m *Model) Init() tea.Cmd {
	// The terminal's background picks the light or the dark palette.
	return tea.Batch(waitEvents(m.opts.Events), waitDone(m.opts.Done), m.tick(), m.refreshStats(), tea.RequestBackgroundColor)
}

func (m *Model) refreshStats() tea.Cmd {
	m.lastStats = m.c.Now()
	if m.screen == screenBatch {
		return tea.Batch(fetchStats(m.c, m.s.batches(), 0), m.batch.Refresh())
	}
	return fetchStats(m.c, m.s.batches(), 0)
}

// Update is the root's: resize, quit, events, view switching; the rest
// goes to the current view.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.c.Width, m.c.Height = msg.Width, msg.Height
		m.bench, _ = m.bench.Update(msg)
		return m, nil
	case tea.BackgroundColorMsg:
		if m.ownStyles { // the station's own styles, not a caller's
			m.c.Styles = NewStyles(msg.IsDark())
		}
		return m, nil
	case eventsMsg:
		verdict, failed := false, false
		for _, e := range msg.events {
			m.s.apply(e)
			if e.Kind == lines.EventVerdict {
				verdict = true
				failed = failed || e.State == lines.StateFail
			}
		}
		m.s.refresh(m.c.Station.Slots())
		var cmds []tea.Cmd
		if !msg.closed {
			cmds = append(cmds, waitEvents(m.opts.Events))
		}
		if verdict {
			m.s.health = m.c.Station.Health()
			cmds = append(cmds, m.refreshStats())
		}
		if failed && m.opts.Bell {
			cmds = append(cmds, tea.Raw("\a"))
		}
		if m.screen == screenDetail {
			var cmd tea.Cmd
			m.detail, cmd = m.detail.Update(msg)
			cmds = append(cmds, cmd)
		}
		return m, tea.Batch(cmds...)
	case tickMsg:
		m.s.refresh(m.c.Station.Slots())
		m.s.health = m.c.Station.Health()
		cmds := []tea.Cmd{m.tick()}
		if m.c.Now().Sub(m.lastStats) >= statsEvery {
			cmds = append(cmds, m.refreshStats())
		}
		if m.status != "" && m.c.Now().Sub(m.statusAt) > 8*time.Second {
			m.status = ""
		}
		return m, tea.Batch(cmds...)
	case doneMsg:
		// Done can overtake the last slot events on their channel: the
		// station's own views are already final, so the cards are too.
		m.s.done = true
		m.s.refresh(m.c.Station.Slots())
		m.s.health = m.c.Station.Health()
		return m, m.refreshStats()
	case statsMsg:
		if msg.err == nil {
			s := msg.stats
			m.stats = &s
		}
		var cmd tea.Cmd
		m.batch, cmd = m.batch.Update(msg)
		return m, cmd
	case actionMsg:
		m.setStatus(msg.text)
		return m, nil
	case assertionMsg:
		var cmd tea.Cmd
		m.detail, cmd = m.detail.Update(msg)
		return m, cmd
	case searchMsg, evidenceMsg, exportMsg:
		var cmd tea.Cmd
		m.qa, cmd = m.qa.Update(msg)
		return m, cmd
	case tea.KeyPressMsg:
		return m.key(msg)
	}
	switch m.screen {
	case screenQA:
		var cmd tea.Cmd
		m.qa, cmd = m.qa.Update(msg)
		return m, cmd
	case screenOperator: // a badge scanner may paste
		var cmd tea.Cmd
		m.op, cmd = m.op.Update(msg)
		return m, cmd
	}
	return m, nil
}

func (m *Model) setStatus(s string) {
	m.status, m.statusAt = s, m.c.Now()
}

// key handles a key press: the pending question first, then the global keys,
// then the current view's.
func (m *Model) key(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	k := m.c.Keys
	if q := m.pending; q != nil {
		m.pending = nil
		if key.Matches(msg, k.Yes) {
			return m, q.yes()
		}
		m.setStatus(q.no)
		return m, nil
	}
	typing := m.screen == screenQA && m.qa.Typing() || m.screen == screenOperator
	switch {
	case key.Matches(msg, k.ForceQuit), key.Matches(msg, k.Quit) && !typing:
		if n, _ := m.s.working(); n > 0 {
			m.ask(m.quitPrompt, func() tea.Cmd {
				m.c.Log.Warn().Msg("operator quit while boards were in work")
				m.quitting = true
				return tea.Quit
			}, "not quitting")
			return m, nil
		}
		m.quitting = true
		return m, tea.Quit
	case key.Matches(msg, k.Help) && !typing:
		if m.screen == screenHelp {
			m.screen = m.prev
		} else {
			m.prev, m.screen = m.screen, screenHelp
		}
		return m, nil
	case key.Matches(msg, k.Batch) && !typing:
		m.screen = screenBatch
		return m, m.refreshStats()
	case key.Matches(msg, k.Search) && !typing:
		m.screen = screenQA
		var cmd tea.Cmd
		m.qa, cmd = m.qa.Focus()
		return m, cmd
	}
	if m.screen == screenBench || m.screen == screenDetail {
		slot := m.bench.Selected()
		if m.screen == screenDetail {
			slot = m.detail.Slot()
		}
		switch {
		case key.Matches(msg, k.Retry):
			return m, m.retry(slot)
		case key.Matches(msg, k.Disable):
			return m, m.toggleDisabled(slot)
		case key.Matches(msg, k.EndBatch):
			if d := m.s.slot(slot); d != nil {
				line := d.View.Line
				m.ask(func() string { return m.endPrompt(line) }, func() tea.Cmd { return m.endBatch(line) },
					"batch of "+line+" not ended")
			}
			return m, nil
		}
	}
	switch m.screen {
	case screenBench:
		switch {
		case key.Matches(msg, k.Enter):
			if id := m.bench.Selected(); id != "" {
				m.screen = screenDetail
				var cmd tea.Cmd
				m.detail, cmd = m.detail.Show(id)
				return m, cmd
			}
		}
		var cmd tea.Cmd
		m.bench, cmd = m.bench.Update(msg)
		return m, cmd
	case screenDetail:
		switch {
		case key.Matches(msg, k.Back):
			m.bench.Select(m.detail.Slot())
			m.screen = screenBench
			return m, nil
		}
		var cmd tea.Cmd
		m.detail, cmd = m.detail.Update(msg)
		return m, cmd
	case screenBatch:
		if key.Matches(msg, k.Back) {
			m.screen = screenBench
			return m, nil
		}
		var cmd tea.Cmd
		m.batch, cmd = m.batch.Update(msg)
		return m, cmd
	case screenHelp:
		if key.Matches(msg, k.Back) {
			m.screen = m.prev
		}
		return m, nil
	case screenOperator:
		if key.Matches(msg, m.op.KeyMap.Enter) && m.op.Name() != "" {
			return m, m.signIn(m.op.Name())
		}
		var cmd tea.Cmd
		m.op, cmd = m.op.Update(msg)
		return m, cmd
	case screenQA:
		if key.Matches(msg, k.Back) && m.qa.Typing() {
			m.screen = screenBench
			return m, nil
		}
		var cmd tea.Cmd
		m.qa, cmd = m.qa.Update(msg)
		return m, cmd
	}
	return m, nil
}

// signIn takes the operator's name: the bench shows, and the station
// records the name.
func (m *Model) signIn(name string) tea.Cmd {
	m.c.Operator = name
	m.screen = screenBench
	m.setStatus("operator " + name + " at the bench")
	m.c.Log.Info().Str("operator", name).Msg("operator at the bench")
	st := m.c.Station
	return func() tea.Msg {
		if err := st.SetOperator(name); err != nil {
			return actionMsg{"operator " + name + ": " + err.Error()}
		}
		return nil
	}
}

// retry asks the station to retry a slot with a verdict; a PASS is asked
// about first (its board would be written again).
func (m *Model) retry(id string) tea.Cmd {
	d := m.s.slot(id)
	if d == nil {
		return nil
	}
	switch d.View.State {
	case lines.StatePass:
		p := "retry " + id + "? its board passed" + serialNote(d.View.Serial) + " - y/n"
		m.ask(func() string { return p }, func() tea.Cmd {
			// The board may have gone while the question was asked.
			if d := m.s.slot(id); d == nil || d.View.State != lines.StatePass {
				m.setStatus(id + " changed while asked: not retried")
				return nil
			}
			return m.doRetry(id)
		}, id+" not retried")
		return nil
	case lines.StateFail, lines.StateStopped:
		return m.doRetry(id)
	default:
		m.setStatus(fmt.Sprintf("%s is %s: retry is for a slot with a verdict", id, BadgeOf(d.View.State).Word))
		return nil
	}
}

// serialNote is " (serial X)", or nothing without a serial.
func serialNote(serial string) string {
	if serial == "" {
		return ""
	}
	return " (serial " + serial + ")"
}

func (m *Model) doRetry(id string) tea.Cmd {
	d := m.s.slot(id)
	if d == nil {
		return nil
	}
	m.setStatus("retrying " + id + ": it starts when the board is in flash mode")
	m.c.Log.Info().Str("slot", id).Str("board", d.View.HWSerial).Str("operator", m.c.Operator).Msg("operator retried a slot")
	st := m.c.Station
	return func() tea.Msg {
		if err := st.Retry(id); err != nil {
			return actionMsg{"retry " + id + ": " + err.Error()}
		}
		return nil
	}
}

// toggleDisabled takes a slot out of service or puts it back; a slot with
// a board in work or a PASS is asked about first.
func (m *Model) toggleDisabled(id string) tea.Cmd {
	d := m.s.slot(id)
	if d == nil {
		return nil
	}
	v := d.View
	if v.Disabled {
		return m.setDisabled(id, false)
	}
	var p string
	switch {
	case working(v.State):
		p = fmt.Sprintf("disable %s (%s)? its unit finishes, then the slot takes no board - y/n", id, workWords[v.State])
	case v.State == lines.StatePass:
		p = "disable " + id + "? its PASS" + serialNote(v.Serial) + " leaves the card - y/n"
	case func() bool { st, _ := d.shown(); return st == lines.StateFail }():
		p = "disable " + id + "? its FAIL leaves the card: set the board aside first - y/n"
	default:
		return m.setDisabled(id, true)
	}
	m.ask(func() string { return p }, func() tea.Cmd { return m.setDisabled(id, true) }, id+" not disabled")
	return nil
}

func (m *Model) setDisabled(id string, disable bool) tea.Cmd {
	d := m.s.slot(id)
	if d == nil {
		return nil
	}
	switch {
	case !disable:
		m.setStatus(id + " back in service")
	case working(d.View.State):
		m.setStatus(id + " will be out of service when its board's unit ends")
	default:
		m.setStatus(id + " out of service")
	}
	d.View.Disabled = disable // shown at once; the pipeline confirms
	if disable && d.Last != nil {
		d.Last.Cleared = true // the operator dealt with the slot's last verdict
	}
	m.c.Log.Info().Str("slot", id).Bool("disabled", disable).Str("operator", m.c.Operator).Msg("operator changed a slot's service")
	st := m.c.Station
	return func() tea.Msg {
		if err := st.SetDisabled(id, disable); err != nil {
			return actionMsg{id + ": " + err.Error()}
		}
		return nil
	}
}

// endBatch asks the station to end a line's batch.
func (m *Model) endBatch(line string) tea.Cmd {
	m.setStatus("ending the batch of " + line + ": its slots take no new board")
	m.c.Log.Info().Str("line", line).Msg("operator ended the line's batch")
	st := m.c.Station
	return func() tea.Msg {
		if err := st.EndBatch(line); err != nil {
			return actionMsg{"end batch of " + line + ": " + err.Error()}
		}
		return nil
	}
}

// endPrompt asks before a line's batch ends, saying what it stops.
func (m *Model) endPrompt(line string) string {
	n := 0
	for _, id := range m.s.order {
		v := m.s.byID[id].View
		if v.Line == line && working(v.State) {
			n++
		}
	}
	p := "end the batch of line " + line
	if n > 0 {
		p += " (" + plural(n, "board", "boards") + " in work will be stopped)"
	}
	return p + "? y/n"
}

// workWords say what a board in work is doing.
var workWords = map[string]string{lines.StatePresent: "starting", lines.StateFlashing: "flashing", lines.StateBooting: "booting",
	lines.StateRegister: "registering"}

// quitPrompt says what is still running: "3 slots still flashing - quit? y/n".
func (m *Model) quitPrompt() string {
	_, by := m.s.working()
	words := workWords
	var parts []string
	for _, st := range []string{lines.StateFlashing, lines.StateBooting, lines.StateRegister, lines.StatePresent} {
		if n := by[st]; n > 0 {
			if len(parts) == 0 {
				parts = append(parts, plural(n, "slot", "slots")+" still "+words[st])
			} else {
				parts = append(parts, fmt.Sprintf("%d %s", n, words[st]))
			}
		}
	}
	return strings.Join(parts, ", ") + " - quit? y/n"
}

// View renders header, the current view and footer.
func (m *Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	v.WindowTitle = "flashstation " + m.c.StationID
	return v
}

// Render is the screen as text (the View's content).
func (m *Model) Render() string {
	if m.quitting {
		return ""
	}
	w, h := m.c.Width, m.c.Height
	if w < minWidth || h < minHeight {
		return tooSmall(w, h)
	}
	body := ""
	bodyH := max(1, h-headerHeight-footerHeight)
	switch m.screen {
	case screenBench:
		body = m.bench.View(bodyH)
	case screenDetail:
		body = m.detail.View()
	case screenBatch:
		body = m.batch.View()
	case screenQA:
		body = m.qa.View()
	case screenHelp:
		body = m.help.View()
	case screenOperator:
		body = m.op.View()
	}
	rows := strings.Split(body, "\n")
	if len(rows) > bodyH {
		rows = rows[:bodyH]
	}
	for i, r := range rows {
		if m.screen != screenBench { // the bench draws exact lines itself
			rows[i] = fit(r, w)
		}
	}
	blank := strings.Repeat(" ", w)
	for len(rows) < bodyH {
		rows = append(rows, blank)
	}
	return strings.Join(append(append(m.header(), rows...), m.footer()), "\n")
}

// The smallest terminal the interface draws in.
const (
	minWidth  = 30
	minHeight = 8
)

// tooSmall is the screen of a terminal too small to draw the bench in:
// every row exactly w cells, h rows.
func tooSmall(w, h int) string {
	msg := []string{"terminal too small", fmt.Sprintf("%dx%d: at least %dx%d", w, h, minWidth, minHeight)}
	rows := make([]string, max(1, h))
	for i := range rows {
		t := ""
		if i < len(msg) {
			t = msg[i]
		}
		rows[i] = fit(t, max(1, w))
	}
	return strings.Join(rows, "\n")
}

// header: the station, operator, counts and yield; each line's batch,
// vault and proxy.
func (m *Model) header() []string {
	st, w := m.c.Styles, m.c.Width
	wide := w >= 110
	left := " FLASHSTATION " + m.c.StationID
	if m.c.Operator != "" {
		if wide {
			left += " · operator " + m.c.Operator
		} else {
			left += " · " + m.c.Operator
		}
	}
	left += " · " + m.c.Now().Local().Format("15:04:05")
	n, _ := m.s.working()
	var counts string
	if m.stats != nil {
		counts = fmt.Sprintf(" PASS %d  FAIL %d", m.stats.Passed, m.stats.Failed)
		if m.stats.Errors > 0 {
			counts += fmt.Sprintf("  ERROR %d", m.stats.Errors)
		}
		counts += fmt.Sprintf("  working %d  yield %s", n, ledger.Percent(m.stats.Yield))
	} else {
		var pass, fail int
		for _, id := range m.s.order {
			switch m.s.byID[id].View.State {
			case lines.StatePass:
				pass++
			case lines.StateFail:
				fail++
			}
		}
		counts = fmt.Sprintf(" PASS %d  FAIL %d  working %d", pass, fail, n)
	}
	if m.s.done {
		banner := "BATCH COMPLETE"
		for _, h := range m.s.health {
			if h.Batch.CloseReason != "" && h.Batch.CloseReason != ledger.BatchComplete {
				banner = "BATCH ENDED"
			}
		}
		counts = st.Banner.Render(banner) + st.Title.Render(" "+counts)
	} else {
		counts = st.Title.Render(counts)
	}
	l1 := st.Title.Render(fit(left, max(0, w-lipgloss.Width(counts)))) + counts

	lineInfo := func(wide bool) string {
		var parts []string
		for _, h := range m.s.health {
			p := h.Line
			if wide && h.Name != "" && h.Name != h.Line {
				p += " (" + h.Name + ")"
			}
			if h.Batch.ID != 0 {
				p += fmt.Sprintf(" #%d", h.Batch.ID)
				if h.Batch.Planned > 0 {
					p += fmt.Sprintf(" %d/%d", h.Finished, h.Batch.Planned)
				}
			}
			switch {
			case h.VaultChecked.IsZero():
				p += " vault " + st.Dim.Render("…")
			case h.VaultOK:
				p += " vault " + st.OK.Render("✔")
			case h.VaultDatabaseDown:
				p += " vault " + st.Bad.Render("✘ DATABASE DOWN")
			case h.VaultKeyRefused:
				p += " vault " + st.Bad.Render("✘ API-KEY REFUSED")
			default:
				p += " vault " + st.Bad.Render("✘ DOWN")
			}
			if h.Proxy != "" {
				addr := h.Proxy
				if i := strings.LastIndex(addr, ":"); i >= 0 && !wide {
					addr = addr[i:]
				}
				p += " proxy " + addr
				ps := h.ProxyStats
				if ps.Unavailable+ps.Rejected > 0 {
					p += " " + st.Warn.Render(fmt.Sprintf("⚠ %d unavailable %d rejected", ps.Unavailable, ps.Rejected))
				} else {
					p += " " + st.OK.Render("✔") + fmt.Sprintf(" %d rec", ps.Recorded)
				}
				// Requests the proxy would not forward (outside allow, no
				// window, a second identity, a foreign nonce, malformed),
				// and serials signed for a unit that had ended.
				if n := ps.Forbidden + ps.NoWindow + ps.Taken + ps.BadNonce + ps.Refused; n > 0 {
					p += " " + st.Warn.Render(fmt.Sprintf("%d refused", n))
				}
				if ps.Unbound > 0 {
					p += " " + st.Warn.Render(fmt.Sprintf("%d without unit", ps.Unbound))
				}
			} else if h.Capture != "" {
				p += " " + h.Capture
			}
			if r := h.Reconciled; r != nil && !r.OK() {
				p += " " + st.Bad.Render(fmt.Sprintf("✘ %d unreconciled", len(r.Differences)))
			}
			parts = append(parts, p)
		}
		return " " + strings.Join(parts, st.Dim.Render(" │ "))
	}
	fac := m.factoryInfo()
	l2 := lineInfo(wide) + fac
	if lipgloss.Width(l2) > w {
		l2 = lineInfo(false) + fac
	}
	if lipgloss.Width(l2) > w && fac != "" {
		// The factory ledger's trouble is never cut off: it goes first.
		l2 = fac + lineInfo(false)
	}
	return []string{l1, fit(l2, w)}
}

// factoryReporter is a station that forwards to a factory ledger
// (*lines.Pipeline is one).
type factoryReporter interface {
	Factory() (ledger.ForwardStatus, bool)
}

// factoryInfo is the header's part on the factory ledger: "" for a
// station without one.
func (m *Model) factoryInfo() string {
	fr, ok := m.c.Station.(factoryReporter)
	if !ok {
		return ""
	}
	fs, ok := fr.Factory()
	if !ok {
		return ""
	}
	st := m.c.Styles
	var p string
	switch h := fs.Header(); {
	case fs.Clash || !fs.Online:
		p = st.Bad.Render("✘ " + h)
	case h != "":
		p = st.Warn.Render(h)
	default:
		p = "factory " + st.OK.Render("✔")
	}
	if fs.Duplicates > 0 {
		p += " " + st.Bad.Render(fmt.Sprintf("⚠ %d also on other benches", fs.Duplicates))
	}
	return st.Dim.Render(" │ ") + p
}

// footer: the pending question, a message, or the keys.
func (m *Model) footer() string {
	st, w := m.c.Styles, m.c.Width
	if m.pending != nil {
		frame := lipgloss.Width(st.Prompt.Render(""))
		return fit(st.Prompt.Render(keepAnswer(m.pending.prompt(), w-frame)), w)
	}
	hm := help.New()
	var keys help.KeyMap
	switch m.screen {
	case screenBench:
		keys = m.bench.KeyMap
	case screenDetail:
		keys = m.detail.KeyMap
	case screenBatch:
		keys = m.batch.KeyMap
	case screenQA:
		keys = m.qa.Keys()
	case screenHelp:
		keys = m.help.KeyMap
	case screenOperator:
		keys = m.op.KeyMap
	}
	right := ""
	if m.screen == screenBench {
		right = m.bench.scrollInfo()
	}
	if m.status != "" {
		return spread(" "+st.Status.Render(m.status), st.Dim.Render(right), w)
	}
	if len(m.s.notices) > 0 {
		last := m.s.notices[len(m.s.notices)-1]
		if m.c.Now().Sub(last.At) < 15*time.Second {
			return spread(" "+st.Warn.Render(sanitize(last.Text)), st.Dim.Render(right), w)
		}
	}
	hm.SetWidth(max(10, w-lipgloss.Width(right)-2))
	return spread(" "+hm.ShortHelpView(backFirst(keys.ShortHelp(), m.c.Keys.Back, m.c.Keys.Quit)), st.Dim.Render(right), w)
}

// keepAnswer cuts a question too wide for the terminal in its middle, so
// that its end (" - quit? y/n", " - y/n", " y/n") stays on screen.
func keepAnswer(p string, w int) string {
	if lipgloss.Width(p) <= w || !strings.HasSuffix(p, " y/n") {
		return p
	}
	tail := " y/n"
	if strings.HasSuffix(p, "? y/n") {
		tail = "? y/n"
	}
	if i := strings.LastIndex(p, " - "); i >= 0 && len(p)-i <= 16 {
		tail = p[i:]
	}
	if w <= lipgloss.Width(tail)+1 {
		return p
	}
	return fit(strings.TrimSuffix(p, tail), w-lipgloss.Width(tail)) + tail
}

// backFirst puts the ways out (esc back, q quit), when a view offers
// them, before its other keys, so that a narrow key bar, cut at its end,
// keeps them.
func backFirst(keys []key.Binding, first ...key.Binding) []key.Binding {
	same := func(a, b key.Binding) bool { return a.Help() == b.Help() && slices.Equal(a.Keys(), b.Keys()) }
	var front, rest []key.Binding
	for _, f := range first {
		for _, b := range keys {
			if same(b, f) {
				front = append(front, b)
				break
			}
		}
	}
	for _, b := range keys {
		if !slices.ContainsFunc(first, func(f key.Binding) bool { return same(b, f) }) {
			rest = append(rest, b)
		}
	}
	return append(front, rest...)
}

// Working reports how many slots have a board in work.
func (m *Model) Working() int {
	n, _ := m.s.working()
	return n
}
