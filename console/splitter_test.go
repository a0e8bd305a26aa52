package console_test

import (
	"strings"
	"testing"

	"github.com/flashstation/flashstation/console"
)

func split(chunks ...string) ([]string, string) {
	var s console.Splitter
	var lines []string
	for _, c := range chunks {
		s.Write([]byte(c))
		lines = append(lines, s.Lines()...)
	}
	return lines, s.Partial()
}

func TestSplitterRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		chunks  []string
		lines   []string
		partial string
	}{
		{"LF", []string{"a\nb\n"}, []string{"a", "b"}, ""},
		{"CRLF", []string{"a\r\nb\r\n"}, []string{"a", "b"}, ""},
		{"CRCRLF", []string{"a\r\r\nb"}, []string{"a"}, "b"},
		{"CRLF split across writes", []string{"a\r", "\nb\r", "\r", "\n"}, []string{"a", "b"}, ""},
		{"bare CR redraws", []string{"50%\r60%\r70%\r\n"}, []string{"70%"}, ""},
		{"spinner across writes", []string{"Seeding /", "\rSeeding -", "\rSeeding |"}, nil, "Seeding |"},
		{"backspace", []string{"Hit any key:  2 \b\b\b 1 \b\b\b 0 \r\n"}, []string{"Hit any key:  0 "}, ""},
		{"backspace removes a whole rune", []string{"caf\xc3\xa9\b\b!\n"}, []string{"ca!"}, ""},
		{"ANSI colours", []string{"[\x1b[0;32m  OK  \x1b[0m] Started\r\n"}, []string{"[  OK  ] Started"}, ""},
		{"ANSI split across writes", []string{"a\x1b[", "0;3", "2mb\n"}, []string{"ab"}, ""},
		{"OSC title", []string{"\x1b]0;title\x07x\n"}, []string{"x"}, ""},
		{"invalid UTF-8", []string{"a\xffb\n"}, []string{"a\uFFFDb"}, ""},
		{"UTF-8 split across writes", []string{"\xe2\x82", "\xac\n"}, []string{"€"}, ""},
		{"controls dropped", []string{"a\x00\x07b\tc\n"}, []string{"ab\tc"}, ""},
		{"prompt without newline", []string{"ubuntu login: "}, nil, "ubuntu login: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines, partial := split(tc.chunks...)
			if strings.Join(lines, "|") != strings.Join(tc.lines, "|") || partial != tc.partial {
				t.Errorf("lines %q partial %q, want %q %q", lines, partial, tc.lines, tc.partial)
			}
		})
	}
}

func TestSplitterCapsLines(t *testing.T) {
	lines, partial := split(strings.Repeat("x", 3*console.MaxLine+10))
	if len(lines) != 3 || len(lines[0]) != console.MaxLine || len(partial) != 10 {
		t.Errorf("%d lines, partial %d", len(lines), len(partial))
	}
}

func TestShowControls(t *testing.T) {
	s := console.Splitter{ShowControls: true}
	s.Write([]byte("a\x07b\x1b[1mc\n"))
	if got := s.Lines(); len(got) != 1 || got[0] != "a^Gbc" {
		t.Errorf("%q", got)
	}
}
