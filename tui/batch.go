package tui

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
)

// BatchKeyMap are the batch view's keys: the view scrolls by a row (up,
// down, j, k), a page (pgup, pgdn) or to its top and bottom (home, end).
type BatchKeyMap struct {
	Up, Down, PageUp, PageDown, Top, Bottom key.Binding
	Back, Search, Help, Quit                key.Binding
}

// newBatchKeyMap takes the station's keys and adds the view's own.
func newBatchKeyMap(k *KeyMap) BatchKeyMap {
	return BatchKeyMap{Up: k.Up, Down: k.Down, PageUp: k.PageUp, PageDown: k.PageDown,
		Top:    key.NewBinding(key.WithKeys("home", "g"), key.WithHelp("home/g", "top")),
		Bottom: key.NewBinding(key.WithKeys("end", "G"), key.WithHelp("end/G", "bottom")),
		Back:   k.Back, Search: k.Search, Help: k.Help, Quit: k.Quit}
}

// ShortHelp is the footer's help (short enough for 80 columns).
func (k BatchKeyMap) ShortHelp() []key.Binding {
	search := k.Search
	search.SetHelp("/", "QA")
	return []key.Binding{footerKeys("↑↓jk", "scroll"), footerKeys("pgup/dn", "page"), footerKeys("home/end", "ends"), k.Back, search, k.Help, k.Quit}
}

// FullHelp is the help view's.
func (k BatchKeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{{k.Up, k.Down, k.PageUp, k.PageDown, k.Top, k.Bottom}, {k.Back, k.Search, k.Help, k.Quit}}
}

// recentUnits is how many recent units the batch view lists.
const recentUnits = 50

// statsMsg carries a report of the station's batches.
type statsMsg struct {
	stats  ledger.Stats
	recent []ledger.Unit
	full   bool // recent units were asked for
	err    error
	at     time.Time
}

// fetchStats reads the report of the batches (and the recent units when
// n > 0) off the interface's goroutine.
func fetchStats(c *Common, batches []int64, n int) tea.Cmd {
	if c.Records == nil || len(batches) == 0 {
		return nil
	}
	rec, ctx, now := c.Records, c.Ctx, c.Now
	return func() tea.Msg {
		m := statsMsg{at: now(), full: n > 0}
		m.stats, m.err = rec.Stats(ctx, ledger.StatsFilter{Batches: batches})
		if m.err == nil && n > 0 {
			m.recent, m.err = rec.Units(ctx, ledger.UnitFilter{Batches: batches, Limit: n, ByFinish: true})
		}
		return m
	}
}

// BatchView is the supervisor's view: counts, yields, throughput, the
// failure pareto, per-slot failure rates and the recent units (newest
// finished first). It scrolls as a whole when it does not fit, and says
// which rows it shows.
type BatchView struct {
	c      *Common
	s      *store
	KeyMap BatchKeyMap
	last   statsMsg
	loaded bool
	top    int // the first row shown
}

// NewBatchView returns the batch view.
func NewBatchView(c *Common, s *store) BatchView {
	return BatchView{c: c, s: s, KeyMap: newBatchKeyMap(c.Keys)}
}

// Refresh asks for a new report.
func (m BatchView) Refresh() tea.Cmd { return fetchStats(m.c, m.s.batches(), recentUnits) }

// height is the rows the view may use.
func (m BatchView) height() int { return max(8, m.c.Height-headerHeight-footerHeight) }

// window is how many rows of the report are shown and the last valid top:
// all of them, or all but the row that says where the view is.
func (m BatchView) window(n int) (rows, maxTop int) {
	h := m.height()
	if n <= h {
		return n, 0
	}
	return h - 1, n - (h - 1)
}

// Update takes reports and scrolls.
func (m BatchView) Update(msg tea.Msg) (BatchView, tea.Cmd) {
	switch msg := msg.(type) {
	case statsMsg:
		if msg.full {
			m.last, m.loaded = msg, true
		}
	case tea.KeyPressMsg:
		rows, maxTop := m.window(len(m.report()))
		k := m.KeyMap
		switch {
		case key.Matches(msg, k.Up):
			m.top--
		case key.Matches(msg, k.Down):
			m.top++
		case key.Matches(msg, k.PageUp):
			m.top -= max(1, rows-1)
		case key.Matches(msg, k.PageDown):
			m.top += max(1, rows-1)
		case key.Matches(msg, k.Top):
			m.top = 0
		case key.Matches(msg, k.Bottom):
			m.top = maxTop
		}
		m.top = min(max(0, m.top), maxTop)
	}
	return m, nil
}

// View renders the report in the screen less header and footer: the rows
// that fit from top, and then, when some do not, where the view is.
func (m BatchView) View() string {
	all := m.report()
	rows, maxTop := m.window(len(all))
	if rows == len(all) {
		return strings.Join(all, "\n")
	}
	top := min(max(0, m.top), maxTop)
	out := slices.Clone(all[top : top+rows])
	var more []string
	if top > 0 {
		more = append(more, fmt.Sprintf("↑ %d rows above", top))
	}
	if below := len(all) - top - rows; below > 0 {
		more = append(more, fmt.Sprintf("↓ %d rows below", below))
	}
	st := m.c.Styles
	out = append(out, spread(st.Warn.Render(strings.Join(more, "  ")),
		st.Dim.Render(fmt.Sprintf("rows %d-%d of %d", top+1, top+rows, len(all))), m.c.Width))
	return strings.Join(out, "\n")
}

// report is every row of the batch view.
func (m BatchView) report() []string {
	st, w := m.c.Styles, m.c.Width
	var out []string
	add := func(s string) { out = append(out, fit(s, w)) }
	var bs []string
	for _, lh := range m.s.health {
		planned := "open-ended"
		if lh.Batch.Planned > 0 {
			planned = fmt.Sprintf("%d/%d done", lh.Finished, lh.Batch.Planned)
		}
		bs = append(bs, fmt.Sprintf("%s batch %d (%s, operator %s)", lh.Line, lh.Batch.ID, planned, lh.Batch.Operator))
	}
	for i, l := range flow(append([]string{st.Section.Render("BATCH")}, bs...), "  ", w) {
		if i == 0 || l != "" {
			add(l)
		}
	}
	if !m.loaded {
		add(st.Dim.Render("reading the ledger…"))
		return out
	}
	if m.last.err != nil {
		add(st.Bad.Render("cannot read the ledger: " + m.last.err.Error()))
		return out
	}
	s := m.last.stats
	dup := fmt.Sprintf("duplicate serials %d", s.Duplicates)
	if s.Duplicates > 0 {
		dup = st.Warn.Render("⚠ " + dup)
	}
	unmatched := fmt.Sprintf("serials without a unit %d", s.Unmatched)
	if s.Unmatched > 0 {
		unmatched = st.Warn.Render("⚠ " + unmatched)
	}
	for _, l := range flow([]string{
		fmt.Sprintf("units %d", s.Units), st.OK.Render(fmt.Sprintf("passed %d", s.Passed)), st.Bad.Render(fmt.Sprintf("failed %d", s.Failed)),
		fmt.Sprintf("in progress %d", s.InProgress), errorsText(st, s.Errors), fmt.Sprintf("aborted %d", s.Aborted),
		fmt.Sprintf("boards %d", s.Boards), fmt.Sprintf("planned %d", s.Planned),
		"yield " + st.Bold.Render(ledger.Percent(s.Yield)), "first-pass yield " + st.Bold.Render(ledger.Percent(s.FirstPassYield)),
		"passes/hour " + ledger.Rate(s.UnitsPerHour), "median flash " + secs(s.MedianFlash), "median boot " + secs(s.MedianBoot),
		dup, unmatched, st.Dim.Render("as of " + m.last.at.Local().Format("15:04:05")),
	}, "   ", w) {
		add(l)
	}
	add("")

	// Pareto and slots side by side when wide, stacked otherwise.
	pareto := []string{st.Section.Render("FAILURE PARETO")}
	maxCount := 1
	for _, r := range s.Pareto {
		maxCount = max(maxCount, r.Count)
	}
	for _, r := range s.Pareto {
		bar := strings.Repeat("█", max(1, r.Count*12/maxCount))
		pareto = append(pareto, fmt.Sprintf("%-20s %-12s %3d  %s", r.Reason, bar, r.Count, lines.ReasonFor(r.Reason).What))
	}
	if len(s.Pareto) == 0 {
		pareto = append(pareto, st.Dim.Render("no failures"))
	}
	if len(s.ErrorReasons) > 0 {
		pareto = append(pareto, st.Section.Render("STATION ERRORS")+st.Dim.Render("  not in yield"))
		for _, r := range s.ErrorReasons {
			pareto = append(pareto, fmt.Sprintf("%-20s %3d  %s", r.Reason, r.Count, lines.ReasonFor(r.Reason).What))
		}
	}
	slots := []string{st.Section.Render("SLOTS") + st.Dim.Render("  units failed   rate")}
	// The slots to look at first: suspects, then by failure rate.
	byRate := slices.Clone(s.Slots)
	slices.SortStableFunc(byRate, func(a, b ledger.SlotStat) int {
		switch {
		case a.Suspect != b.Suspect:
			if a.Suspect {
				return -1
			}
			return 1
		case a.FailRate != b.FailRate:
			if a.FailRate > b.FailRate {
				return -1
			}
			return 1
		}
		return naturalCompare(a.Slot, b.Slot)
	})
	for _, ss := range byRate {
		line := fmt.Sprintf("%-6s %5d  %6d  %6s", ss.Slot, ss.Units, ss.Failed, pct(ss.FailRate))
		if ss.Suspect {
			line += " " + st.Warn.Render("⚠ check")
		}
		slots = append(slots, line)
	}
	if len(s.Slots) == 0 {
		slots = append(slots, st.Dim.Render("no finished units"))
	}
	// Side by side, all of them: the view scrolls.
	lw := w * 3 / 5
	for i := range max(len(pareto), len(slots)) {
		var l, r string
		if i < len(pareto) {
			l = pareto[i]
		}
		if i < len(slots) {
			r = slots[i]
		}
		add(fit(l, lw-1) + "│ " + r)
	}
	add("")
	recent := "  newest finished first"
	if len(m.last.recent) >= recentUnits {
		recent += fmt.Sprintf(", the last %d", len(m.last.recent))
	}
	add(st.Section.Render("RECENT UNITS") + st.Dim.Render(recent))
	add(st.Dim.Render(fmt.Sprintf("%-6s %-8s %-6s %-14s %-14s %-9s %-22s %s", "UNIT", "SLOT", "LINE", "BOARD", "SERIAL", "VERDICT", "REASON", "FINISHED")))
	for _, u := range m.last.recent {
		verdict := fit(outcomeWord(st, u.State), 9)
		fin := ""
		if !u.FinishedAt.IsZero() {
			fin = u.FinishedAt.Local().Format("15:04:05")
		}
		add(fmt.Sprintf("%-6d %-8s %-6s %-14s %-14s %s %-22s %s", u.ID, u.SlotID, u.LineID, u.HWSerial, u.Serial, verdict, u.Reason, fin))
	}
	if len(m.last.recent) == 0 {
		add(st.Dim.Render("no units yet"))
	}
	return out
}

// naturalCompare orders slot ids as people do: A2 before A10.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		ca, cb := a[0], b[0]
		if isDigit(ca) && isDigit(cb) {
			na, ra := leadingNumber(a)
			nb, rb := leadingNumber(b)
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
			a, b = ra, rb
			continue
		}
		if ca != cb {
			if ca < cb {
				return -1
			}
			return 1
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func leadingNumber(s string) (int, string) {
	n, i := 0, 0
	for i < len(s) && isDigit(s[i]) && i < 9 {
		n = n*10 + int(s[i]-'0')
		i++
	}
	return n, s[i:]
}

// errorsText counts the station's errors, marked when there are any.
func errorsText(st *Styles, n int) string {
	t := fmt.Sprintf("station errors %d", n)
	if n > 0 {
		return st.Warn.Render("⚠ " + t)
	}
	return t
}
