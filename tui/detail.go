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

// DetailKeyMap are the slot detail's keys.
type DetailKeyMap struct {
	PageUp, PageDown, Follow, Top key.Binding
	PrevSlot, NextSlot            key.Binding
	Retry, Disable, Back, Quit    key.Binding
}

// ShortHelp is the footer's help: the ways out first, so that a narrow
// terminal keeps them.
func (k DetailKeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Back, k.Quit, k.PrevSlot, k.NextSlot, k.Retry, k.Disable, k.PageUp, k.PageDown, k.Follow}
}

// FullHelp is the help view's.
func (k DetailKeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{{k.PageUp, k.PageDown, k.Follow, k.Top}, {k.PrevSlot, k.NextSlot}, {k.Retry, k.Disable, k.Back, k.Quit}}
}

// assertionMsg carries a unit's serial assertions from the ledger.
type assertionMsg struct {
	unit int64
	list []ledger.SerialAssertion
	err  error
}

// Detail is one slot in full: timeline, flash figures, failure, serial
// assertion and the live console with scrollback.
type Detail struct {
	c      *Common
	s      *store
	KeyMap DetailKeyMap
	slot   string
	back   int // console lines scrolled up from the newest (0: follow)

	asUnit int64 // the unit the assertion below belongs to
	as     *ledger.SerialAssertion
	asErr  error
}

// NewDetail returns the detail view (Show picks the slot).
func NewDetail(c *Common, s *store) Detail {
	k := c.Keys
	return Detail{c: c, s: s, KeyMap: DetailKeyMap{PageUp: k.PageUp, PageDown: k.PageDown, Follow: k.Follow, Top: k.Top,
		PrevSlot: k.PrevSlot, NextSlot: k.NextSlot, Retry: k.Retry, Disable: k.Disable, Back: k.Back, Quit: k.Quit}}
}

// Slot is the slot shown.
func (m Detail) Slot() string { return m.slot }

// Show shows a slot, following its console, and loads its assertion.
func (m Detail) Show(slot string) (Detail, tea.Cmd) {
	m.slot, m.back = slot, 0
	m.as, m.asErr, m.asUnit = nil, nil, 0
	return m, m.loadAssertion()
}

// loadAssertion asks the ledger for the serial assertion of the slot's
// passed unit.
func (m *Detail) loadAssertion() tea.Cmd {
	d := m.s.slot(m.slot)
	if d == nil || d.View.State != lines.StatePass || d.Unit == 0 || m.asUnit == d.Unit || m.c.Records == nil {
		return nil
	}
	m.asUnit = d.Unit
	unit, rec, ctx := d.Unit, m.c.Records, m.c.Ctx
	return func() tea.Msg {
		list, err := rec.SerialAssertions(ctx, ledger.AssertionFilter{UnitID: unit})
		return assertionMsg{unit: unit, list: list, err: err}
	}
}

// consoleHeight is the number of console lines shown under a top part of
// n lines.
func (m Detail) consoleHeight(n int) int {
	return max(3, m.c.Height-headerHeight-footerHeight-n-1)
}

// Update scrolls the console, moves between slots and takes the assertion.
func (m Detail) Update(msg tea.Msg) (Detail, tea.Cmd) {
	switch msg := msg.(type) {
	case assertionMsg:
		if msg.unit == m.asUnit {
			m.as, m.asErr = nil, msg.err
			if len(msg.list) > 0 {
				a := msg.list[len(msg.list)-1]
				m.as = &a
			}
		}
		return m, nil
	case tea.KeyPressMsg:
		d := m.s.slot(m.slot)
		if d == nil {
			return m, nil
		}
		h := m.consoleHeight(len(m.top()))
		page := max(1, h-1)
		maxBack := max(0, len(d.Console)-h)
		switch {
		case key.Matches(msg, m.KeyMap.PageUp):
			m.back = min(maxBack, m.back+page)
		case key.Matches(msg, m.KeyMap.PageDown):
			m.back = max(0, m.back-page)
		case key.Matches(msg, m.KeyMap.Follow):
			m.back = 0
		case key.Matches(msg, m.KeyMap.Top):
			m.back = maxBack
		case key.Matches(msg, m.KeyMap.PrevSlot), key.Matches(msg, m.KeyMap.NextSlot):
			i := slices.Index(m.s.order, m.slot)
			if key.Matches(msg, m.KeyMap.PrevSlot) {
				i--
			} else {
				i++
			}
			if i >= 0 && i < len(m.s.order) {
				return m.Show(m.s.order[i])
			}
		}
		return m, nil
	}
	// Any other message (events): load the assertion once the slot passed.
	return m, m.loadAssertion()
}

// top is everything above the console: title, timeline next to flash
// figures and assertion, failure.
func (m Detail) top() []string {
	st, w := m.c.Styles, m.c.Width
	d := m.s.slot(m.slot)
	if d == nil {
		return []string{fit(st.Bad.Render("no slot "+m.slot), w)}
	}
	v := d.View
	now := m.c.Now()
	title := "slot " + st.Bold.Render(v.ID) + " · line " + v.Line
	if v.HWSerial != "" {
		title += " · board " + v.HWSerial
	}
	if d.Unit != 0 {
		title += fmt.Sprintf(" · unit %d", d.Unit)
	}
	if v.Attempt > 0 {
		title += fmt.Sprintf(" · attempt %d", v.Attempt)
	}
	// A unit that ended keeps its verdict and its durations, fixed at its
	// end, also once its board is pulled (the slot's view is reset then).
	final := d.final()
	badge, elapsed := st.badge(v.State), ""
	switch start := d.started(); {
	case v.State == lines.StateIdle && final != nil:
		badge = st.badge(final.State)
		if !start.IsZero() {
			elapsed = " " + clock(d.Ended.Sub(start))
		}
		elapsed += " · board removed"
	case !start.IsZero() && v.State != lines.StateIdle:
		end := now
		if !d.Ended.IsZero() {
			end = d.Ended
		}
		elapsed = " " + clock(end.Sub(start))
	}
	out := []string{spread(title, badge+elapsed, w)}

	// Left: the timeline with durations; only a unit in work has a
	// running one.
	running := working(v.State)
	left := []string{st.Section.Render("TIMELINE")}
	// The end of the last span: now while the unit runs, its verdict's
	// time once it ended (unknown: no span, never a running timer).
	end, ended := now, !d.Ended.IsZero() || v.State == lines.StatePass || v.State == lines.StateFail || !running
	if ended {
		end = d.Ended
	}
	spans := timelineSpans(d.Timeline, end, ended)
	for i, mk := range d.Timeline {
		var dur string
		switch sp := spans[i]; {
		case mk.Skipped:
			dur = st.Dim.Render("skipped")
		case sp.none:
		case sp.open:
			dur = secs(sp.d) + " …"
		default:
			dur = secs(sp.d)
		}
		name := mk.Name
		if !mk.Stage {
			name = strings.ToUpper(name)
		} else {
			name = "  " + name
		}
		left = append(left, fmt.Sprintf("%-24s %s", name, dur))
	}
	if len(d.Timeline) == 0 {
		left = append(left, st.Dim.Render("no unit yet"))
	}

	// Right: flash figures, then the serial assertion.
	right := []string{st.Section.Render("FLASH")}
	if f := d.Flash; f != nil {
		right = append(right, "target "+f.Target,
			fmt.Sprintf("wrote %s in %s (%s)", bytesIEC(f.Written), secs(f.Write), mbps(rate(f.Written, f.Write))))
		if f.Verified {
			right = append(right, fmt.Sprintf("read back %s in %s ✔", bytesIEC(f.Mapped), secs(f.Verify)))
		} else if f.Note != "" {
			right = append(right, "no read-back: "+f.Note)
		}
	} else if p := d.Phases["write"]; p != nil {
		right = append(right, fmt.Sprintf("write %s of %s, %s", bytesIEC(p.Done), bytesIEC(p.Total), mbps(p.Rate)))
		if vp := d.Phases["verify"]; vp != nil {
			right = append(right, fmt.Sprintf("read-back %s of %s, %s", bytesIEC(vp.Done), bytesIEC(vp.Total), mbps(vp.Rate)))
		}
	} else {
		right = append(right, st.Dim.Render("not flashed yet"))
	}
	right = append(right, "", st.Section.Render("SERIAL ASSERTION"))
	switch {
	case m.as != nil && m.asUnit == d.Unit:
		a := m.as
		right = append(right, "serial "+st.OK.Render(a.Serial)+fmt.Sprintf("  revision %d", a.Revision),
			"brand "+a.BrandID+"  model "+a.Model,
			"device key "+a.DeviceKeyID, "via "+a.Via+" at "+a.ReceivedAt.Local().Format("15:04:05"))
		if a.Duplicate {
			right = append(right, st.Warn.Render("⚠ the vault signed this serial or key before"))
		}
	case m.asErr != nil:
		right = append(right, st.Bad.Render("cannot read it: "+m.asErr.Error()))
	case v.State == lines.StatePass:
		right = append(right, st.Dim.Render("loading…"))
	default:
		right = append(right, st.Dim.Render("none yet"))
	}

	lw := min(40, w/2)
	rows := max(len(left), len(right))
	for i := range rows {
		var l, r string
		if i < len(left) {
			l = left[i]
		}
		if i < len(right) {
			r = right[i]
		}
		out = append(out, fit(l, lw)+"│ "+fit(r, w-lw-2))
	}
	reason, detail := v.Reason, v.Detail
	failed := v.State == lines.StateFail
	if v.State == lines.StateIdle && final != nil && final.State == lines.StateFail {
		failed, reason, detail = true, final.Reason, final.Detail
	}
	if failed {
		r := lines.ReasonFor(reason)
		out = append(out, fit(st.Bad.Render("FAILED: "+reason)+" - "+r.What, w),
			fit(st.Bold.Render("→ "+r.Advice), w))
		if detail != "" {
			for _, l := range wrap("detail: "+sanitize(strings.ReplaceAll(detail, "\n", " | ")), w, 2) {
				out = append(out, fit(st.Dim.Render(l), w))
			}
		}
	}
	return out
}

// span is how long a timeline mark lasted: open while it still runs, none
// for the verdict itself (and a skipped stage).
type span struct {
	d          time.Duration
	open, none bool
}

// timelineSpans says how long each mark of a timeline lasted. A slot state
// lasts until the next slot state, so that it spans its boot stages (its
// time is the sum of theirs, and of the wait before the first); a boot
// stage lasts until the next mark of any kind. The last state lasts until
// end, open unless the unit ended; a verdict (PASS, FAIL) has no span, nor
// has the last mark of an ended unit whose end is not known (zero).
func timelineSpans(tl []mark, end time.Time, ended bool) []span {
	out := make([]span, len(tl))
	for i, mk := range tl {
		if mk.Skipped {
			out[i].none = true
			continue
		}
		next := -1
		for j := i + 1; j < len(tl); j++ {
			if !tl[j].Skipped && (mk.Stage || !tl[j].Stage) {
				next = j
				break
			}
		}
		switch {
		case next >= 0:
			out[i].d = tl[next].At.Sub(mk.At)
		case !mk.Stage && (mk.Name == lines.StatePass || mk.Name == lines.StateFail), ended && end.IsZero():
			out[i].none = true
		default:
			out[i].d, out[i].open = max(0, end.Sub(mk.At)), !ended
		}
	}
	return out
}

func rate(n int64, d time.Duration) float64 {
	if s := d.Seconds(); s > 0 {
		return float64(n) / s
	}
	return 0
}

// View renders the detail in the screen less header and footer.
func (m Detail) View() string {
	st, w := m.c.Styles, m.c.Width
	out := m.top()
	d := m.s.slot(m.slot)
	if d == nil {
		return strings.Join(out, "\n")
	}
	h := m.consoleHeight(len(out))
	follow := "following"
	if m.back > 0 {
		follow = fmt.Sprintf("%d lines up - end to follow", m.back)
	}
	out = append(out, spread(st.Section.Render("CONSOLE"), st.Dim.Render(follow), w))
	lines := d.lastLines(h, m.back)
	for _, l := range lines {
		out = append(out, fit(sanitize(l), w))
	}
	for range h - len(lines) {
		out = append(out, "")
	}
	return strings.Join(out, "\n")
}
