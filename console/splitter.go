package console

import (
	"strings"
	"unicode/utf8"
)

// MaxLine is the longest line kept: longer runs without a line end are
// cut into pieces of this size (and matching goes on).
const MaxLine = 4096

// Splitter turns console bytes into lines, following the rules of
// ../shared/spec/boot-console.md: lines end at "\r\r\n", "\r\n" or "\n"; a
// bare "\r" restarts the current line (spinners redraw that way); a
// backspace removes the last character; ANSI escape sequences are dropped;
// other control characters are dropped (or shown as ^X with ShowControls);
// invalid UTF-8 becomes U+FFFD and nothing is lost silently. It never uses
// bufio.Scanner, whose 64 KiB limit breaks on spinners.
type Splitter struct {
	// ShowControls keeps control characters as ^X (the QA rendering)
	// instead of dropping them (matching).
	ShowControls bool
	// MarkUnreadable (the QA rendering) collapses each run of bytes that
	// are not printable text, invalid UTF-8 or control characters, into
	// one marker with its byte count (see MarkUnreadable); it takes
	// precedence over ShowControls.
	MarkUnreadable bool

	cur     []byte // the current line, escape sequences removed
	pendCR  bool   // a "\r" whose meaning depends on the next byte
	esc     escState
	lines   []string
	garbage garbageMeter
}

type escState uint8

const (
	escNone   escState = iota
	escStart           // after ESC
	escCSI             // ESC [ ... until a final byte
	escOSC             // ESC ] ... until BEL or ESC \
	escOSCEsc          // ESC inside OSC
)

// Write consumes bytes; complete lines are collected for Lines. It never
// fails.
func (s *Splitter) Write(p []byte) (int, error) {
	for _, c := range p {
		s.garbage.add(c, s.esc != escNone)
		s.byte(c)
	}
	return len(p), nil
}

func (s *Splitter) byte(c byte) {
	switch s.esc {
	case escStart:
		switch c {
		case '[':
			s.esc = escCSI
		case ']':
			s.esc = escOSC
		default:
			s.esc = escNone // a two-byte sequence such as ESC 7
		}
		return
	case escCSI:
		if c >= 0x40 && c <= 0x7e {
			s.esc = escNone
		}
		return
	case escOSC:
		switch c {
		case 0x07:
			s.esc = escNone
		case 0x1b:
			s.esc = escOSCEsc
		}
		return
	case escOSCEsc:
		s.esc = escNone
		return
	}
	if s.pendCR {
		s.pendCR = false
		switch c {
		case '\n':
			s.emit()
			return
		case '\r':
			s.pendCR = true // "\r\r\n": still waiting
			return
		default:
			s.cur = s.cur[:0] // a bare CR: the line is redrawn
		}
	}
	switch {
	case c == '\n':
		s.emit()
	case c == '\r':
		s.pendCR = true
	case c == 0x1b:
		s.esc = escStart
	case c == '\b' || c == 0x7f:
		s.backspace()
	case c == '\t':
		s.add(c)
	case c < 0x20:
		if s.MarkUnreadable {
			s.add(c)
		} else if s.ShowControls {
			s.add('^')
			s.add(c + '@')
		}
	default:
		s.add(c)
	}
}

func (s *Splitter) add(c byte) {
	if len(s.cur) >= MaxLine {
		s.lines = append(s.lines, s.text(s.cur))
		s.cur = s.cur[:0]
	}
	s.cur = append(s.cur, c)
}

// backspace removes the last character (a whole UTF-8 sequence).
func (s *Splitter) backspace() {
	if len(s.cur) == 0 {
		return
	}
	_, size := utf8.DecodeLastRune(s.cur)
	s.cur = s.cur[:len(s.cur)-max(size, 1)]
}

func (s *Splitter) emit() {
	s.lines = append(s.lines, s.text(s.cur))
	s.cur = s.cur[:0]
}

// text is a line's bytes as a string: invalid UTF-8 as U+FFFD, or marked.
func (s *Splitter) text(b []byte) string {
	if s.MarkUnreadable {
		t, _ := MarkUnreadable(b)
		return t
	}
	return clean(b)
}

func clean(b []byte) string {
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// Lines returns the lines completed since the last call.
func (s *Splitter) Lines() []string {
	out := s.lines
	s.lines = nil
	return out
}

// Partial is the line being received: a prompt such as "login: " never
// ends with a newline.
func (s *Splitter) Partial() string { return s.text(s.cur) }

// Garbage reports, over the recent bytes, whether the input looks like a
// wrong baud rate or line noise: at least 256 bytes of which more than
// half are neither text nor line control.
func (s *Splitter) Garbage() bool { return s.garbage.bad() }

// Printable is how many of the recent bytes were text.
func (s *Splitter) Printable() (text, total int) { return s.garbage.text, s.garbage.total }

// garbageMeter counts text versus noise over a window of recent bytes.
type garbageMeter struct {
	ring  [512]bool // true: noise
	n     int
	total int
	text  int
	noise int
	utf8  int // continuation bytes still expected
}

func (g *garbageMeter) add(c byte, inEscape bool) {
	noise := false
	switch {
	case inEscape || c == 0x1b:
	case g.utf8 > 0:
		if c&0xc0 == 0x80 {
			g.utf8--
		} else {
			g.utf8 = 0
			noise = true
		}
	case c >= 0x20 && c < 0x7f, c == '\r', c == '\n', c == '\t', c == '\b':
	case c >= 0xc2 && c <= 0xf4:
		g.utf8 = 1
		if c >= 0xe0 {
			g.utf8 = 2
		}
		if c >= 0xf0 {
			g.utf8 = 3
		}
	default:
		noise = true
	}
	i := g.n % len(g.ring)
	if g.total >= len(g.ring) {
		if g.ring[i] {
			g.noise--
		} else {
			g.text--
		}
	} else {
		g.total++
	}
	g.ring[i] = noise
	g.n++
	if noise {
		g.noise++
	} else {
		g.text++
	}
}

func (g *garbageMeter) bad() bool {
	return g.total >= 256 && g.noise*2 > g.total
}
