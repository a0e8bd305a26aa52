package tui

import (
	"strings"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// HelpKeyMap are the help view's keys.
type HelpKeyMap struct{ Back, Help, Quit key.Binding }

// ShortHelp is the footer's help.
func (k HelpKeyMap) ShortHelp() []key.Binding { return []key.Binding{k.Back, k.Quit} }

// FullHelp is the help view's.
func (k HelpKeyMap) FullHelp() [][]key.Binding { return [][]key.Binding{{k.Back}} }

// HelpView lists every key of every view, with what the states mean.
type HelpView struct {
	c      *Common
	KeyMap HelpKeyMap
	groups []helpGroup
}

type helpGroup struct {
	title string
	keys  help.KeyMap
}

// NewHelpView returns the help view over the components' key maps.
func NewHelpView(c *Common, bench BenchKeyMap, detail DetailKeyMap, batch BatchKeyMap, qa QAKeyMap) HelpView {
	return HelpView{c: c, KeyMap: HelpKeyMap{Back: c.Keys.Back, Help: c.Keys.Help, Quit: c.Keys.Quit},
		groups: []helpGroup{{"BENCH", bench}, {"SLOT DETAIL", detail}, {"BATCH", batch}, {"QA LOOKUP", qa}}}
}

// Update does nothing: the root closes the help.
func (m HelpView) Update(tea.Msg) (HelpView, tea.Cmd) { return m, nil }

// View renders the keys and the state legend.
func (m HelpView) View() string {
	st, w := m.c.Styles, m.c.Width
	var out []string
	for _, g := range m.groups {
		var fields []string
		for _, col := range g.keys.FullHelp() {
			for _, b := range col {
				if b.Enabled() {
					fields = append(fields, st.Bold.Render(b.Help().Key)+" "+b.Help().Desc)
				}
			}
		}
		out = append(out, st.Section.Render(g.title))
		out = append(out, flow(fields, st.Dim.Render(" · "), w)...)
	}
	out = append(out, st.Section.Render("SLOT STATES"))
	var legend []string
	for _, s := range []string{"idle", "present", "flashing", "booting", "register", "pass", "fail", "disabled"} {
		legend = append(legend, st.badge(s))
	}
	out = append(out, flow(legend, " ", w)...)
	out = append(out, "")
	for _, l := range flow([]string{"q and ctrl+c ask first while boards are in work;", "r on a PASS, and d on a PASS or a board in work, ask y/n."}, " ", w) {
		out = append(out, st.Dim.Render(l))
	}
	lines := strings.Split(strings.Join(out, "\n"), "\n")
	for i, l := range lines {
		lines[i] = fit(l, w)
	}
	return strings.Join(lines, "\n")
}
