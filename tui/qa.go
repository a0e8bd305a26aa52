package tui

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"github.com/flashstation/flashstation/ledger"
)

// QAKeyMap are the QA view's keys. While the search box has the focus,
// letters (j, k, g, G included) type into it: the list moves by arrows
// and pgup/pgdn only (the Type* keys), and tab gives the focus to the
// list, where j/k, home/end and the rest work too.
type QAKeyMap struct {
	Up, Down, Open, Export, PageUp, PageDown, Back key.Binding
	Top, Bottom                                    key.Binding
	// Line and Last scroll the evidence's console by a line and to its
	// newest line.
	Line, Last key.Binding
	// Focus moves the focus between the search box and the list.
	Focus key.Binding
	// TypeUp, TypeDown, TypePageUp and TypePageDown move in the list
	// while the box has the focus: no letters.
	TypeUp, TypeDown, TypePageUp, TypePageDown key.Binding
}

// newQAKeyMap takes the station's keys and adds the QA view's own.
func newQAKeyMap(k *KeyMap) QAKeyMap {
	open := k.Enter
	open.SetHelp("enter", "evidence")
	return QAKeyMap{Up: k.Up, Down: k.Down, Open: open, Export: k.Export, PageUp: k.PageUp, PageDown: k.PageDown, Back: k.Back,
		Top:          key.NewBinding(key.WithKeys("home", "g"), key.WithHelp("home/g", "first")),
		Bottom:       key.NewBinding(key.WithKeys("end", "G"), key.WithHelp("end/G", "last")),
		Line:         key.NewBinding(key.WithKeys("up", "k", "down", "j"), key.WithHelp("↑↓/jk", "line")),
		Last:         key.NewBinding(key.WithKeys("end", "G"), key.WithHelp("end/G", "newest")),
		Focus:        key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "list keys")),
		TypeUp:       key.NewBinding(key.WithKeys("up"), key.WithHelp("↑", "up")),
		TypeDown:     key.NewBinding(key.WithKeys("down"), key.WithHelp("↓", "down")),
		TypePageUp:   key.NewBinding(key.WithKeys("pgup"), key.WithHelp("pgup", "page up")),
		TypePageDown: key.NewBinding(key.WithKeys("pgdown"), key.WithHelp("pgdn", "page down")),
	}
}

// ShortHelp is the footer's help while the list has the focus (short
// enough for 80 columns).
func (k QAKeyMap) ShortHelp() []key.Binding {
	open, focus := k.Open, k.Focus
	open.SetHelp("enter", "open")
	focus.SetHelp("tab", "search")
	return []key.Binding{footerKeys("↑↓jk", "move"), footerKeys("pgup/dn", "page"), footerKeys("home/end", "ends"), open, focus, k.Back}
}

// pageKeys is pgup and pgdn together, for the footer.
func pageKeys() key.Binding { return footerKeys("pgup/pgdn", "page") }

// footerKeys is a binding only shown in a footer: it matches no key.
func footerKeys(keys, desc string) key.Binding {
	return key.NewBinding(key.WithKeys(keys), key.WithHelp(keys, desc))
}

// typingKeys are the keys while the search box has the focus: no letter.
type typingKeys struct{ k QAKeyMap }

func (t typingKeys) ShortHelp() []key.Binding {
	return []key.Binding{t.k.TypeUp, t.k.TypeDown, pageKeys(), t.k.Open, t.k.Focus, t.k.Back}
}

func (t typingKeys) FullHelp() [][]key.Binding { return [][]key.Binding{t.ShortHelp()} }

// evidenceKeys are the keys while a unit's evidence is shown.
type evidenceKeys struct {
	k       QAKeyMap
	onTimes bool
}

func (e evidenceKeys) ShortHelp() []key.Binding {
	export, last, pane := e.k.Export, e.k.Last, e.k.Focus
	export.SetHelp("e", "export")
	last.SetHelp("end", "newest")
	pane.SetHelp("tab", "timeline")
	if e.onTimes {
		pane.SetHelp("tab", "console")
	}
	return []key.Binding{export, footerKeys("pgup/dn", "page"), footerKeys("↑↓jk", "line"), last, pane, e.k.Back}
}

func (e evidenceKeys) FullHelp() [][]key.Binding { return [][]key.Binding{e.ShortHelp()} }

// Keys are the keys of the current mode, for the footer.
func (m QA) Keys() help.KeyMap {
	switch {
	case m.open:
		return evidenceKeys{m.KeyMap, m.onTimes}
	case m.input.Focused():
		return typingKeys{m.KeyMap}
	}
	return m.KeyMap
}

// FullHelp is the help view's.
func (k QAKeyMap) FullHelp() [][]key.Binding {
	search := key.NewBinding(key.WithKeys("up", "down", "pgup", "pgdown"), key.WithHelp("in the search box", "↑ ↓ pgup pgdn move; letters type"))
	return [][]key.Binding{{search, k.Focus}, {k.Up, k.Down, k.PageUp, k.PageDown, k.Top, k.Bottom, k.Open}, {k.Export, k.Line, k.Last, k.Back}}
}

// searchMsg carries the units matching a search.
type searchMsg struct {
	query string
	units []ledger.Unit
	err   error
}

// evidenceMsg carries a unit's evidence and its console transcript.
type evidenceMsg struct {
	ev      ledger.Evidence
	console []string
	err     error
}

// exportMsg says where a bundle went.
type exportMsg struct {
	path string
	err  error
}

// searchLimit bounds a search's units.
const searchLimit = 200

// QA finds units by any part of their board, serial, slot, reason or
// batch, shows a unit's evidence and exports its bundle.
type QA struct {
	c      *Common
	KeyMap QAKeyMap
	input  textinput.Model
	query  string
	units  []ledger.Unit
	err    error
	sel    int
	top    int

	open    bool // the evidence of units[sel] is shown
	ev      *ledger.Evidence
	console []string
	back    int  // console lines scrolled up from the newest
	evBack  int  // timeline events scrolled up from the newest
	onTimes bool // the scroll keys move the timeline, not the console
	status  string
}

// NewQA returns the QA view.
func NewQA(c *Common) QA {
	k := c.Keys
	in := textinput.New()
	in.Prompt = "search: "
	in.Placeholder = "board/serial/slot/reason/batch"
	in.CharLimit = 64
	in.SetWidth(32)
	in.SetVirtualCursor(true)
	// A steady cursor: a blinking one would redraw the bench twice a
	// second for nothing.
	st := in.Styles()
	st.Cursor.Blink = false
	in.SetStyles(st)
	return QA{c: c, input: in, KeyMap: newQAKeyMap(k)}
}

// Focus starts a search: the input takes the keys.
func (m QA) Focus() (QA, tea.Cmd) {
	m.open = false
	cmd := m.input.Focus()
	return m, tea.Batch(cmd, m.search())
}

// Typing reports whether keys go to the search input.
func (m QA) Typing() bool { return !m.open && m.input.Focused() }

func (m QA) search() tea.Cmd {
	if m.c.Records == nil {
		return nil
	}
	q, rec, ctx := m.input.Value(), m.c.Records, m.c.Ctx
	return func() tea.Msg {
		units, err := rec.Units(ctx, ledger.UnitFilter{Match: q, Limit: searchLimit})
		return searchMsg{query: q, units: units, err: err}
	}
}

func (m QA) loadEvidence(id int64) tea.Cmd {
	rec, ctx := m.c.Records, m.c.Ctx
	return func() tea.Msg {
		ev, err := rec.Evidence(ctx, id)
		if err != nil {
			return evidenceMsg{err: err}
		}
		var console []string
		if ev.Clean != "" {
			if f, ferr := os.Open(ev.Clean); ferr == nil {
				sc := bufio.NewScanner(f)
				sc.Buffer(make([]byte, 64<<10), 1<<20)
				for sc.Scan() {
					console = append(console, sc.Text())
					if len(console) > 2*consoleKeep {
						console = append(console[:0], console[consoleKeep:]...)
					}
				}
				f.Close()
			}
		}
		return evidenceMsg{ev: ev, console: console}
	}
}

func (m QA) export() tea.Cmd {
	ev, dir := m.ev, m.c.ExportDir
	log := m.c.Log
	return func() tea.Msg {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return exportMsg{err: err}
		}
		path := filepath.Join(dir, ledger.BundleName(ev.Unit))
		err := ledger.WriteBundleFile(path, *ev)
		if err == nil {
			log.Info().Int64("unit", ev.Unit.ID).Str("bundle", path).Msg("QA exported a unit's evidence")
		}
		return exportMsg{path: path, err: err}
	}
}

// listHeight is the rows of results shown.
func (m QA) listHeight() int { return max(3, m.c.Height-headerHeight-footerHeight-3) }

// Update types, moves, opens and exports.
func (m QA) Update(msg tea.Msg) (QA, tea.Cmd) {
	switch msg := msg.(type) {
	case searchMsg:
		if msg.query == m.input.Value() {
			m.units, m.err, m.query = msg.units, msg.err, msg.query
			m.sel, m.top = 0, 0
		}
		return m, nil
	case evidenceMsg:
		if msg.err != nil {
			m.status = "cannot read the evidence: " + msg.err.Error()
			return m, nil
		}
		m.ev, m.console, m.back, m.evBack, m.onTimes = &msg.ev, msg.console, 0, 0, false
		return m, nil
	case exportMsg:
		if msg.err != nil {
			m.status = "export failed: " + msg.err.Error()
		} else {
			m.status = "bundle written to " + msg.path
		}
		return m, nil
	case tea.KeyPressMsg:
		if m.open {
			return m.evidenceKey(msg)
		}
		h, last := m.listHeight(), max(0, len(m.units)-1)
		typing := m.input.Focused()
		k := m.KeyMap
		switch {
		case key.Matches(msg, k.Open):
			if m.sel < len(m.units) {
				m.open, m.ev, m.status = true, nil, ""
				m.input.Blur()
				return m, m.loadEvidence(m.units[m.sel].ID)
			}
			return m, nil
		case key.Matches(msg, k.Focus), !typing && key.Matches(msg, k.Back):
			if typing {
				m.input.Blur()
				return m, nil
			}
			return m, m.input.Focus()
		case typing && key.Matches(msg, k.TypeUp), !typing && key.Matches(msg, k.Up):
			m.sel = max(0, m.sel-1)
		case typing && key.Matches(msg, k.TypeDown), !typing && key.Matches(msg, k.Down):
			m.sel = min(last, m.sel+1)
		case typing && key.Matches(msg, k.TypePageUp), !typing && key.Matches(msg, k.PageUp):
			m.sel = max(0, m.sel-h)
			m.top = max(0, m.top-h)
		case typing && key.Matches(msg, k.TypePageDown), !typing && key.Matches(msg, k.PageDown):
			m.sel = min(last, m.sel+h)
			m.top = min(max(0, len(m.units)-h), m.top+h)
		case !typing && key.Matches(msg, k.Top):
			m.sel = 0
		case !typing && key.Matches(msg, k.Bottom):
			m.sel = last
		case typing:
			var cmd tea.Cmd
			before := m.input.Value()
			m.input, cmd = m.input.Update(msg)
			if m.input.Value() != before {
				return m, tea.Batch(cmd, m.search())
			}
			return m, cmd
		default:
			return m, nil
		}
		if m.sel < m.top {
			m.top = m.sel
		}
		if m.sel >= m.top+h {
			m.top = m.sel - h + 1
		}
		return m, nil
	}
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(msg)
	return m, cmd
}

// evidenceKey scrolls the evidence's console (or its timeline, after
// tab), exports, or goes back.
func (m QA) evidenceKey(msg tea.KeyPressMsg) (QA, tea.Cmd) {
	k := m.KeyMap
	switch {
	case key.Matches(msg, k.Back):
		m.open, m.ev, m.status = false, nil, ""
		return m, m.input.Focus()
	case key.Matches(msg, k.Export):
		if m.ev != nil {
			m.status = "exporting…"
			return m, m.export()
		}
		return m, nil
	case key.Matches(msg, k.Focus):
		m.onTimes = !m.onTimes
		return m, nil
	}
	back, rows, n := &m.back, m.consoleHeight(), len(m.console)
	if m.onTimes && m.ev != nil {
		back, rows, n = &m.evBack, m.timelineRows(), len(m.ev.Events)
	}
	page, maxBack := max(1, rows-1), max(0, n-rows)
	switch {
	case key.Matches(msg, k.PageUp):
		*back += page
	case key.Matches(msg, k.PageDown):
		*back -= page
	case key.Matches(msg, k.Up):
		*back++
	case key.Matches(msg, k.Down):
		*back--
	case key.Matches(msg, k.Top):
		*back = maxBack
	case key.Matches(msg, k.Last):
		*back = 0
	}
	*back = min(max(0, *back), maxBack)
	return m, nil
}

// View renders the search and its results, or a unit's evidence.
func (m QA) View() string {
	st, w := m.c.Styles, m.c.Width
	if m.open {
		return m.evidenceView()
	}
	var out []string
	add := func(s string) { out = append(out, fit(s, w)) }
	h := m.listHeight()
	count := plural(len(m.units), "unit", "units")
	if len(m.units) >= searchLimit {
		count = fmt.Sprintf("the first %d units", len(m.units))
	}
	if len(m.units) > h {
		count = fmt.Sprintf("%d-%d of %s", m.top+1, min(len(m.units), m.top+h), count)
	}
	add(spread(st.Section.Render("QA LOOKUP")+"  "+m.input.View(), st.Dim.Render(count), w))
	if m.err != nil {
		add(st.Bad.Render("search failed: " + m.err.Error()))
	}
	add(st.Dim.Render(fmt.Sprintf("  %-6s %-8s %-6s %-14s %-14s %-8s %-22s %s", "UNIT", "SLOT", "LINE", "BOARD", "SERIAL", "VERDICT", "REASON", "FINISHED")))
	for i := m.top; i < len(m.units) && i < m.top+h; i++ {
		u := m.units[i]
		fin := ""
		if !u.FinishedAt.IsZero() {
			fin = u.FinishedAt.Local().Format("01-02 15:04")
		}
		row := fmt.Sprintf("%-6d %-8s %-6s %-14s %-14s %-8s %-22s %s", u.ID, u.SlotID, u.LineID, u.HWSerial, u.Serial, strings.ToUpper(u.State), u.Reason, fin)
		if i == m.sel {
			add(st.Selected.Render(fit("▸ "+row, w)))
		} else {
			add("  " + row)
		}
	}
	if len(m.units) == 0 && m.query != "" {
		add(st.Dim.Render("  no unit's board, serial, slot, reason or batch contains " + m.query))
	}
	return strings.Join(out, "\n")
}

// evidenceHeight is the rows of the evidence view.
func (m QA) evidenceHeight() int { return max(8, m.c.Height-headerHeight-footerHeight) }

// consoleHeight is the console lines the evidence view shows.
func (m QA) consoleHeight() int {
	return max(1, m.evidenceHeight()-len(m.evidenceTop())-2)
}

// evidenceTop is the evidence above its console: the unit, its serial
// assertions and its timeline (the events that fit, scrolled by evBack).
func (m QA) evidenceTop() []string {
	out := m.evidenceHead()
	if m.ev == nil {
		return out
	}
	st, w := m.c.Styles, m.c.Width
	add := func(s string) { out = append(out, fit(s, w)) }
	rows := m.timelineRows()
	evs := m.ev.Events
	end := max(0, len(evs)-m.evBack)
	first := max(0, end-rows)
	where := ""
	if len(evs) > rows {
		where = fmt.Sprintf("events %d-%d of %d", first+1, end, len(evs))
		if m.evBack > 0 {
			where += " - end to follow"
		}
	}
	add(spread(st.Section.Render(pointer(m.onTimes)+"TIMELINE"), st.Dim.Render(where), w))
	for _, e := range evs[first:end] {
		add(fmt.Sprintf("  %s  %-8s %-14s %s", e.At.Local().Format("15:04:05.000"), e.Kind, e.Stage, sanitize(e.Message)))
	}
	return out
}

// evidenceHead is the unit and its serial assertions.
func (m QA) evidenceHead() []string {
	st, w := m.c.Styles, m.c.Width
	var out []string
	add := func(s string) { out = append(out, fit(s, w)) }
	if m.ev == nil {
		add(st.Dim.Render("reading the evidence…"))
		return out
	}
	u := m.ev.Unit
	verdict := outcomeWord(st, u.State)
	if u.Reason != "" {
		verdict += " " + u.Reason
	}
	for _, l := range flow([]string{st.Section.Render("UNIT " + strconv.Itoa(int(u.ID))), verdict, "board " + u.HWSerial, "serial " + u.Serial,
		"slot " + u.SlotID, "line " + u.LineID, fmt.Sprintf("batch %d", u.BatchID), fmt.Sprintf("attempt %d", u.Attempt),
		"started " + u.StartedAt.Local().Format("2006-01-02 15:04:05"), "finished " + u.FinishedAt.Local().Format("15:04:05"),
		fmt.Sprintf("flash %s mapped, %s written in %s, read back in %s", bytesIEC(u.MappedBytes), bytesIEC(u.WrittenBytes), secs(u.FlashTime), secs(u.VerifyTime)),
		"boot " + secs(u.BootTime)}, "  ", w) {
		add(l)
	}
	// The image the unit was flashed with, as its batch records it.
	if im := m.ev.Image; im.ModelDigest != "" || im.SeedLabel != "" || im.ModelSignKey != "" {
		label := im.SeedLabel
		if label == "" {
			label = "none"
		}
		add(sanitize(fmt.Sprintf("image: seed label %s  model digest %s  model sign key %s", label, im.ModelDigest, im.ModelSignKey)))
	} else {
		add(st.Dim.Render("image identity not recorded (batch started before the gate)"))
	}
	if u.Detail != "" {
		add(st.Dim.Render("detail: " + sanitize(strings.ReplaceAll(u.Detail, "\n", " | "))))
	}
	for _, a := range m.ev.Assertions {
		dup := ""
		if a.Duplicate {
			dup = st.Warn.Render("  ⚠ duplicate")
		}
		add(fmt.Sprintf("serial assertion: serial %s  brand %s  model %s  revision %d  device key %s  via %s%s",
			a.Serial, a.BrandID, a.Model, a.Revision, a.DeviceKeyID, a.Via, dup))
	}
	if len(m.ev.Assertions) == 0 {
		add(st.Dim.Render("no serial assertion"))
	}
	return out
}

// pointer marks the part of the evidence the scroll keys move.
func pointer(on bool) string {
	if on {
		return "▸ "
	}
	return ""
}

// timelineRows is how many timeline events the evidence shows at once:
// a third of the room under the unit, at least 3.
func (m QA) timelineRows() int {
	top := 0
	if m.ev != nil {
		top = len(m.evidenceHead())
	}
	return max(3, (m.evidenceHeight()-top-1)/3)
}

func (m QA) evidenceView() string {
	st, w := m.c.Styles, m.c.Width
	h := m.evidenceHeight()
	out := m.evidenceTop()
	if m.ev == nil {
		return strings.Join(out, "\n")
	}
	add := func(s string) { out = append(out, fit(s, w)) }
	ch := m.consoleHeight()
	end := max(0, len(m.console)-m.back)
	first := max(0, end-ch)
	follow := "no console lines"
	if len(m.console) > 0 {
		follow = fmt.Sprintf("lines %d-%d of %d", first+1, end, len(m.console))
		if m.back > 0 {
			follow += " - end to follow"
		}
	}
	add(spread(st.Section.Render(pointer(!m.onTimes && len(m.ev.Events) > m.timelineRows())+"CONSOLE")+st.Dim.Render(" "+filepath.Base(m.ev.Clean)), st.Dim.Render(follow), w))
	for _, l := range m.console[first:end] {
		add(sanitize(l))
	}
	for len(out) < h-1 {
		out = append(out, "")
	}
	status := m.status
	if status == "" {
		status = "e: export the bundle to " + m.c.ExportDir
	}
	add(st.Status.Render(status))
	return strings.Join(out, "\n")
}
