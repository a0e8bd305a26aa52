package tui

import (
	"image/color"
	"sync"

	"charm.land/lipgloss/v2"

	"github.com/flashstation/flashstation/lines"
)

// Colours, by meaning. States are never told by colour alone: every badge
// carries a glyph and a word too.
var (
	colorPass     = lipgloss.Color("#1B7F3B")
	colorFail     = lipgloss.Color("#C62828")
	colorFlashing = lipgloss.Color("#1565C0")
	colorBooting  = lipgloss.Color("#6A1B9A")
	colorRegister = lipgloss.Color("#B45309")
	colorPresent  = lipgloss.Color("#00838F")
	colorIdle     = lipgloss.Color("#5F6368")
	colorDisabled = lipgloss.Color("#3C4043")
	colorOnBadge  = lipgloss.Color("#FFFFFF")
	colorAccent   = lipgloss.Color("#F9A825") // the selection
	colorWarn     = lipgloss.Color("#E65100")
	colorDim      = lipgloss.Color("#8A8F98")
	colorText     = lipgloss.Color("#E8EAED")
	colorTitleBg  = lipgloss.Color("#263238")
	colorBarTodo  = lipgloss.Color("#455A64")
)

// Badge is how a slot state is shown: a glyph, a word, a colour.
type Badge struct {
	Glyph string
	Word  string
	Color color.Color
}

// badges are the slot states' badges.
var badges = map[string]Badge{
	lines.StateIdle:     {"·", "EMPTY", colorIdle},
	lines.StatePresent:  {"●", "STARTING", colorPresent},
	lines.StateFlashing: {"▼", "FLASHING", colorFlashing},
	lines.StateBooting:  {"▲", "BOOTING", colorBooting},
	lines.StateRegister: {"◆", "SIGNING", colorRegister},
	lines.StatePass:     {"✔", "PASS", colorPass},
	lines.StateFail:     {"✘", "FAIL", colorFail},
	lines.StateDisabled: {"⊘", "DISABLED", colorDisabled},
	lines.StateStopped:  {"■", "STOPPED", colorIdle},
}

// BadgeOf returns a state's badge.
func BadgeOf(state string) Badge {
	if b, ok := badges[state]; ok {
		return b
	}
	return Badge{"?", "UNKNOWN", colorIdle}
}

// Styles holds every style of the interface, by meaning.
type Styles struct {
	Title    lipgloss.Style // the header's title bar
	Dim      lipgloss.Style
	Bold     lipgloss.Style
	OK       lipgloss.Style
	Bad      lipgloss.Style
	Warn     lipgloss.Style
	Section  lipgloss.Style // a section heading
	Selected lipgloss.Style // the selected row of a list
	Status   lipgloss.Style // the footer's message
	Prompt   lipgloss.Style // the quit guard
	BarDone  lipgloss.Style
	BarTodo  lipgloss.Style
	Banner   lipgloss.Style // batch complete

	once sync.Once
	p    paints
}

// paints are the card styles reduced to escape sequences (see paint).
type paints struct {
	dim, bold, ok, bad, warn, barDone, barTodo, accent paint
	badge, border                                      map[string]paint
}

// paints returns the card paints, made once.
func (s *Styles) paints() *paints {
	s.once.Do(func() {
		s.p = paints{dim: painter(s.Dim), bold: painter(s.Bold), ok: painter(s.OK), bad: painter(s.Bad), warn: painter(s.Warn),
			barDone: painter(s.BarDone), barTodo: painter(s.BarTodo), accent: painter(lipgloss.NewStyle().Foreground(colorAccent)),
			badge: map[string]paint{}, border: map[string]paint{}}
		for state, b := range badges {
			s.p.badge[state] = painter(lipgloss.NewStyle().Bold(true).Foreground(colorOnBadge).Background(b.Color))
			s.p.border[state] = painter(lipgloss.NewStyle().Foreground(b.Color))
		}
	})
	return &s.p
}

// DefaultStyles returns the station's styles.
func DefaultStyles() *Styles {
	s := lipgloss.NewStyle()
	return &Styles{
		Title:    s.Bold(true).Foreground(colorText).Background(colorTitleBg),
		Dim:      s.Foreground(colorDim),
		Bold:     s.Bold(true),
		OK:       s.Foreground(colorPass).Bold(true),
		Bad:      s.Foreground(colorFail).Bold(true),
		Warn:     s.Foreground(colorWarn).Bold(true),
		Section:  s.Bold(true).Underline(true),
		Selected: s.Reverse(true),
		Status:   s.Foreground(colorAccent).Bold(true),
		Prompt:   s.Bold(true).Foreground(colorOnBadge).Background(colorWarn).Padding(0, 1),
		BarDone:  s.Foreground(colorFlashing),
		BarTodo:  s.Foreground(colorBarTodo),
		Banner:   s.Bold(true).Foreground(colorOnBadge).Background(colorPass).Padding(0, 1),
	}
}

// badge renders a state's badge: coloured block, glyph and word.
func (s *Styles) badge(state string) string {
	b := BadgeOf(state)
	return lipgloss.NewStyle().Bold(true).Foreground(colorOnBadge).Background(b.Color).Padding(0, 1).Render(b.Glyph + " " + b.Word)
}
