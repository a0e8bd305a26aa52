package tui

import (
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
)

// OperatorKeyMap are the operator prompt's keys.
type OperatorKeyMap struct{ Enter, ForceQuit key.Binding }

// ShortHelp is the footer's help.
func (k OperatorKeyMap) ShortHelp() []key.Binding { return []key.Binding{k.Enter, k.ForceQuit} }

// FullHelp is the help view's.
func (k OperatorKeyMap) FullHelp() [][]key.Binding { return [][]key.Binding{k.ShortHelp()} }

// OperatorPrompt asks who is at the bench before the bench shows, when
// the station was started without an operator: a name typed, or a badge
// scanned (a scanner types its code, then Enter). An empty name is
// refused.
type OperatorPrompt struct {
	c      *Common
	input  textinput.Model
	KeyMap OperatorKeyMap
	err    string
}

// NewOperatorPrompt returns the operator prompt.
func NewOperatorPrompt(c *Common) OperatorPrompt {
	in := textinput.New()
	in.Prompt = "operator: "
	in.Placeholder = "your name, or scan your badge"
	in.CharLimit = 64
	in.SetWidth(40)
	in.SetVirtualCursor(true)
	st := in.Styles()
	st.Cursor.Blink = false // a steady cursor: no redraws for nothing
	in.SetStyles(st)
	return OperatorPrompt{c: c, input: in, KeyMap: OperatorKeyMap{
		Enter:     key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "start the bench")),
		ForceQuit: c.Keys.ForceQuit,
	}}
}

// Focus gives the input the keys.
func (m OperatorPrompt) Focus() (OperatorPrompt, tea.Cmd) { return m, m.input.Focus() }

// Name is the name typed, trimmed.
func (m OperatorPrompt) Name() string { return strings.TrimSpace(m.input.Value()) }

// Update types into the input; Enter with no name says one is needed
// (the root takes a name).
func (m OperatorPrompt) Update(msg tea.Msg) (OperatorPrompt, tea.Cmd) {
	if k, ok := msg.(tea.KeyPressMsg); ok && key.Matches(k, m.KeyMap.Enter) {
		if m.Name() == "" {
			m.err = "a name or a badge is needed to start the bench"
			m.input.SetValue("")
		}
		return m, nil
	}
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(msg)
	if m.Name() != "" {
		m.err = ""
	}
	return m, cmd
}

// View renders the prompt in the screen less header and footer.
func (m OperatorPrompt) View() string {
	st, w := m.c.Styles, m.c.Width
	out := []string{"", st.Section.Render("WHO IS AT THE BENCH?"), ""}
	out = append(out, wrap("Type your name or scan your badge, then Enter. The batch, and every retry, disable and batch end, "+
		"records it.", w, 4)...)
	out = append(out, "", " "+m.input.View(), "")
	if m.err != "" {
		out = append(out, st.Bad.Render(m.err))
	}
	for i, l := range out {
		out[i] = fit(l, w)
	}
	return strings.Join(out, "\n")
}
