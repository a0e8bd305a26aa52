package tui

import (
	"image/color"
	"sync"

	"charm.land/lipgloss/v2"

	"github.com/flashstation/flashstation/lines"
)

// Palette is every colour of the interface, by meaning, for one kind of
// terminal background. Verdicts are never told by colour alone: PASS and
// FAIL tiles differ by glyph, word, pattern and (FAIL) inverse video, so
// they stay apart on a monochrome terminal (NO_COLOR) too.
type Palette struct {
	Background color.Color // the terminal's background, assumed for contrast
	Text       color.Color // body text
	Dim        color.Color // secondary text
	Border     color.Color // a working card's frame
	Select     color.Color // the selected card's frame
	TitleFg    color.Color
	TitleBg    color.Color
	OnTile     color.Color // text on a verdict tile or a badge
	Pass       color.Color // the PASS tile
	Fail       color.Color // the FAIL tile
	Warn       color.Color
	BarTodo    color.Color
	// State accents: a working card's badge.
	Present, Flashing, Booting, Register, Idle, Disabled color.Color
}

// DarkPalette is for dark terminal backgrounds (the default).
var DarkPalette = Palette{
	Background: lipgloss.Color("#1E1E1E"),
	Text:       lipgloss.Color("#E8EAED"),
	Dim:        lipgloss.Color("#A0A6AD"),
	Border:     lipgloss.Color("#80868B"),
	Select:     lipgloss.Color("#FFFFFF"),
	TitleFg:    lipgloss.Color("#FFFFFF"),
	TitleBg:    lipgloss.Color("#37474F"),
	OnTile:     lipgloss.Color("#FFFFFF"),
	Pass:       lipgloss.Color("#1B6E34"),
	Fail:       lipgloss.Color("#C62828"),
	Warn:       lipgloss.Color("#FFB74D"),
	BarTodo:    lipgloss.Color("#607D8B"),
	Present:    lipgloss.Color("#00796B"),
	Flashing:   lipgloss.Color("#1565C0"),
	Booting:    lipgloss.Color("#7B1FA2"),
	Register:   lipgloss.Color("#A34700"),
	Idle:       lipgloss.Color("#5F6368"),
	Disabled:   lipgloss.Color("#4A4F55"),
}

// LightPalette is for light terminal backgrounds: the dark one's tiles
// and badges (white text on strong colours reads on either), with its own
// background, text, selection and warning colours.
var LightPalette = func() Palette {
	p := DarkPalette
	p.Background = lipgloss.Color("#FFFFFF")
	p.Text = lipgloss.Color("#202124")
	p.Dim = lipgloss.Color("#5F6368")
	p.Select = lipgloss.Color("#000000")
	p.Warn = lipgloss.Color("#A34700")
	p.BarTodo = lipgloss.Color("#B0BEC5")
	return p
}()

// Badge is how a slot state is shown: a glyph, a word, a colour.
type Badge struct {
	Glyph string
	Word  string
	Color color.Color
}

// badgeOf are the slot states' glyphs and words; colours from a palette.
var badgeWords = map[string][2]string{
	lines.StateIdle:     {"·", "EMPTY"},
	lines.StatePresent:  {"●", "STARTING"},
	lines.StateFlashing: {"▼", "FLASHING"},
	lines.StateBooting:  {"▲", "BOOTING"},
	lines.StateRegister: {"◆", "SIGNING"},
	lines.StatePass:     {"✔", "PASS"},
	lines.StateFail:     {"✘", "FAIL"},
	lines.StateDisabled: {"⊘", "DISABLED"},
	lines.StateStopped:  {"■", "STOPPED"},
}

func (p Palette) stateColor(state string) color.Color {
	switch state {
	case lines.StatePresent:
		return p.Present
	case lines.StateFlashing:
		return p.Flashing
	case lines.StateBooting:
		return p.Booting
	case lines.StateRegister:
		return p.Register
	case lines.StatePass:
		return p.Pass
	case lines.StateFail:
		return p.Fail
	case lines.StateDisabled:
		return p.Disabled
	}
	return p.Idle
}

// BadgeOf returns a state's badge (colours of the dark palette).
func BadgeOf(state string) Badge { return DarkPalette.badge(state) }

func (p Palette) badge(state string) Badge {
	if w, ok := badgeWords[state]; ok {
		return Badge{w[0], w[1], p.stateColor(state)}
	}
	return Badge{"?", "UNKNOWN", p.Idle}
}

// Styles holds every style of the interface, by meaning.
type Styles struct {
	Palette  Palette
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
	Stopped  lipgloss.Style // a line's stop banner

	once sync.Once
	p    paints
}

// paints are the card styles reduced to escape sequences (see paint).
type paints struct {
	dim, bold, ok, bad, warn, barDone, barTodo, selectFrame, border, stopped paint
	badge                                                                    map[string]paint
	// A verdict tile paints its whole card: PASS on its colour; FAIL on
	// its colour and in inverse video (inverse alone on a monochrome
	// terminal).
	passTile, passTileBold, failTile, failTileBold paint
}

// paints returns the card paints, made once.
func (s *Styles) paints() *paints {
	s.once.Do(func() {
		pl := s.Palette
		st := lipgloss.NewStyle()
		s.p = paints{dim: painter(s.Dim), bold: painter(s.Bold), ok: painter(s.OK), bad: painter(s.Bad), warn: painter(s.Warn),
			barDone: painter(s.BarDone), barTodo: painter(s.BarTodo), selectFrame: painter(st.Foreground(pl.Select).Bold(true)),
			border: painter(st.Foreground(pl.Border)), stopped: painter(s.Stopped),
			badge: map[string]paint{}}
		for state := range badgeWords {
			s.p.badge[state] = painter(st.Bold(true).Foreground(pl.OnTile).Background(pl.stateColor(state)))
		}
		pass := st.Foreground(pl.OnTile).Background(pl.Pass)
		s.p.passTile, s.p.passTileBold = painter(pass), painter(pass.Bold(true))
		// Reverse swaps the two: red behind white text in colour, and
		// inverse video where there is no colour.
		fail := st.Foreground(pl.Fail).Background(pl.OnTile).Reverse(true)
		s.p.failTile, s.p.failTileBold = painter(fail), painter(fail.Bold(true))
	})
	return &s.p
}

// DefaultStyles returns the station's styles for a dark background.
func DefaultStyles() *Styles { return NewStyles(true) }

// NewStyles returns the styles for a dark or a light terminal background.
func NewStyles(dark bool) *Styles {
	pl := LightPalette
	if dark {
		pl = DarkPalette
	}
	s := lipgloss.NewStyle()
	return &Styles{
		Palette:  pl,
		Title:    s.Bold(true).Foreground(pl.TitleFg).Background(pl.TitleBg),
		Dim:      s.Foreground(pl.Dim),
		Bold:     s.Bold(true),
		OK:       s.Foreground(pl.Pass).Bold(true),
		Bad:      s.Foreground(pl.Fail).Bold(true),
		Warn:     s.Foreground(pl.Warn).Bold(true),
		Section:  s.Bold(true).Underline(true),
		Selected: s.Reverse(true),
		Status:   s.Foreground(pl.Warn).Bold(true),
		Prompt:   s.Bold(true).Foreground(pl.OnTile).Background(pl.Register).Padding(0, 1),
		BarDone:  s.Foreground(pl.Flashing),
		BarTodo:  s.Foreground(pl.BarTodo),
		Banner:   s.Bold(true).Foreground(pl.OnTile).Background(pl.Pass).Padding(0, 1),
		Stopped:  s.Bold(true).Foreground(pl.Fail).Background(pl.OnTile).Reverse(true),
	}
}

// badge renders a state's badge: coloured block, glyph and word.
func (s *Styles) badge(state string) string {
	b := s.Palette.badge(state)
	return lipgloss.NewStyle().Bold(true).Foreground(s.Palette.OnTile).Background(b.Color).Padding(0, 1).Render(b.Glyph + " " + b.Word)
}
