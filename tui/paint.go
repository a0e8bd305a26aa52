package tui

import (
	"strings"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
)

// paint is a style reduced to the escape sequences around a text: the
// slot cards, drawn many times a second, are painted with these instead
// of measuring and rendering through lipgloss.
type paint struct{ pre, post string }

// painter reduces a style (colours and attributes, no padding, borders or
// sizes) to its paint.
func painter(s lipgloss.Style) paint {
	const mark = "\uE000"
	r := s.Render(mark)
	i := strings.Index(r, mark)
	if i < 0 {
		return paint{}
	}
	return paint{pre: r[:i], post: r[i+len(mark):]}
}

func (p paint) on(s string) string {
	if s == "" || p.pre == "" {
		return s
	}
	return p.pre + s + p.post
}

// seg is a piece of a line: plain text and its paint.
type seg struct {
	text string
	p    paint
}

// cellWidth is a plain text's width in cells, fast for ASCII.
func cellWidth(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || s[i] == 0x1b {
			return ansi.StringWidth(s)
		}
	}
	return len(s)
}

// cut truncates plain text to w cells (with … when cut).
func cut(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if cellWidth(s) <= w {
		return s
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || s[i] == 0x1b {
			return ansi.Truncate(s, w, "…")
		}
	}
	return s[:w-1] + "…"
}

// line renders segments into exactly w cells.
func line(w int, segs ...seg) string {
	var b strings.Builder
	left := w
	for _, s := range segs {
		if left <= 0 {
			break
		}
		t := cut(s.text, left)
		left -= cellWidth(t)
		b.WriteString(s.p.on(t))
	}
	if left > 0 {
		b.WriteString(strings.Repeat(" ", left))
	}
	return b.String()
}
