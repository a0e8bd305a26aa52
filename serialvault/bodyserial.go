package serialvault

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// MaxRequestBody bounds a serial request the proxy accepts: a
// serial-request and a model are about 3 KiB, with a registration body a
// few more.
const MaxRequestBody = 64 << 10

// MaxBodyNesting bounds how deep a registration body's flow collections
// (brackets and braces) nest: real bodies are flat key: value lines, and
// the vault decodes the body it signs.
const MaxBodyNesting = 16

// CheckBodyNesting refuses a registration body whose brackets and braces
// nest deeper than MaxBodyNesting, or whose lines are indented deeper
// than 256 columns, in one pass and without decoding it.
func CheckBodyNesting(body []byte) error {
	depth, col, line := 0, 0, 1
	indent := true
	for _, c := range body {
		switch c {
		case '\n':
			line, col, indent = line+1, 0, true
			continue
		case '[', '{':
			depth++
			if depth > MaxBodyNesting {
				return fmt.Errorf("body line %d nests deeper than %d", line, MaxBodyNesting)
			}
		case ']', '}':
			depth = max(0, depth-1)
		}
		if c == ' ' && indent {
			col++
			if col > 256 {
				return fmt.Errorf("body line %d nests deeper than 256 columns of indentation", line)
			}
		} else {
			indent = false
		}
	}
	return nil
}

// ProposedSerial is the serial a request proposes: its serial header, else
// the top-level serial key of its body (the vault's rule). The body is
// device-supplied YAML: it is scanned, never decoded, and a body whose
// serial is not a plain top-level key is refused with a reason.
func ProposedSerial(req *SerialRequest) (string, error) {
	if req.Serial != "" {
		return req.Serial, nil
	}
	return ScanBodySerial(req.Body())
}

var (
	topLevelKey = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*:(?:[ \t]|$)`)
	// Plain scalars YAML 1.1 (the vault's decoder) reads as something
	// other than a string, among those in the strict serial form.
	yamlNumber = regexp.MustCompile(`^[-+]?(?:0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|[0-9][0-9:]*(?:[eE][-+]?[0-9]+)?)$`)
	yamlDate   = regexp.MustCompile(`^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}`)
	yamlWords  = map[string]bool{
		"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "n": true, "N": true, "no": true, "No": true, "NO": true,
		"true": true, "True": true, "TRUE": true, "false": true, "False": true, "FALSE": true,
		"on": true, "On": true, "ON": true, "off": true, "Off": true, "OFF": true, "null": true, "Null": true, "NULL": true,
	}
)

// ScanBodySerial finds the serial of a registration body: the value of its
// one top-level `serial:` key, a plain or simply quoted scalar in the
// strict serial form. It reads the body once, line by line, and allocates
// nothing for the rest of it: an alias bomb or a deep nesting elsewhere
// costs no more than its bytes. A body with no serial key gives "" and no
// error; a body whose top level is not a plain block mapping (or is
// indented), with a line break YAML reads other than \n (CR, NEL, LS,
// PS), with two serial keys, or with a serial the vault would not read as
// this string (a number, a date, a boolean, an alias, a nested value) is
// an error.
func ScanBodySerial(body []byte) (string, error) {
	serial, found, inSerial, seenKey := "", false, false, false
	for n, rest := 1, body; len(rest) > 0; n++ {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if hasOtherBreak(line) {
			// The vault's decoder breaks lines there too: one line here
			// would be two to it.
			return "", fmt.Errorf("body line %d: a line break other than \\n or \\r\\n (CR, NEL, LS or PS) is not accepted in a registration body", n)
		}
		if hasNodeProperty(line) {
			// YAML decoders disagree on what a tag, an anchor or an alias
			// applies to: a body holding one proposes no serial of its own.
			return "", fmt.Errorf("body line %d: a YAML tag, anchor or alias (!, &, *) is not accepted in a registration body", n)
		}
		switch {
		case len(bytes.Trim(line, " \t")) == 0:
			continue
		case line[0] == ' ' && inSerial:
			return "", fmt.Errorf("body line %d: the serial's value goes on past its line", n)
		case line[0] == ' ' && !seenKey && bytes.TrimLeft(line, " ")[0] != '#':
			// An indented first key makes the whole top level indented.
			return "", fmt.Errorf("body line %d: the top level is not a plain YAML mapping (its first key is indented)", n)
		case line[0] == '#', line[0] == ' ':
			continue // a comment, or inside another top-level value
		case n == 1 && bytes.Equal(line, []byte("---")):
			continue
		case !topLevelKey.Match(line):
			return "", fmt.Errorf("body line %d: the top level is not a plain YAML mapping (key: value)", n)
		}
		seenKey = true
		if !bytes.HasPrefix(line, []byte("serial:")) {
			inSerial = false
			continue
		}
		inSerial = true
		if found {
			return "", fmt.Errorf("body line %d: a second serial key", n)
		}
		found = true
		v, err := plainSerial(string(bytes.Trim(line[len("serial:"):], " \t")))
		if err != nil {
			return "", fmt.Errorf("body line %d: serial %w", n, err)
		}
		serial = v
	}
	return serial, nil
}

// plainSerial reads a serial key's value as the vault's YAML decoder would
// read it as a string, or refuses it.
func plainSerial(v string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("has no value on its line (a nested or block value is not a serial)")
	}
	quoted := false
	switch v[0] {
	case '"', '\'':
		q := v[0]
		end := strings.IndexByte(v[1:], q)
		if end < 0 {
			return "", fmt.Errorf("has an unterminated quote")
		}
		after := strings.Trim(v[end+2:], " \t")
		if after != "" && after[0] != '#' {
			return "", fmt.Errorf("has text after its quoted value")
		}
		v, quoted = v[1:end+1], true
		if strings.ContainsAny(v, `\'"`) {
			return "", fmt.Errorf("uses quote escapes")
		}
	case '[', '{', '&', '*', '!', '|', '>', '%', '@', '`', '?', '-':
		return "", fmt.Errorf("is not a plain scalar")
	}
	if !quoted {
		if i := strings.Index(v, " #"); i >= 0 {
			v = strings.TrimRight(v[:i], " \t")
		}
	}
	if !ValidSerial(v) {
		return "", fmt.Errorf("%q is not in the strict form", truncate(v))
	}
	if !quoted && (yamlNumber.MatchString(v) || yamlDate.MatchString(v) || yamlWords[v]) {
		return "", fmt.Errorf("%q would be read by the vault as a number, date or boolean, not a serial: quote it", v)
	}
	return v, nil
}

// YAML line breaks besides \n: NEL, LS and PS (CR is checked apart).
var (
	nel = []byte("\u0085")
	ls  = []byte("\u2028")
	ps  = []byte("\u2029")
)

// hasOtherBreak reports whether a line holds a character YAML reads as a
// line break (gopkg.in/yaml.v2, the vault's decoder, breaks at all four).
func hasOtherBreak(line []byte) bool {
	return bytes.IndexByte(line, '\r') >= 0 || bytes.Contains(line, nel) || bytes.Contains(line, ls) || bytes.Contains(line, ps)
}

// hasNodeProperty reports whether a line holds a YAML tag, anchor or alias
// where a node starts: at the start of the line or after an indicator
// (":", "-", "?", "[", "{", ","), past spaces.
func hasNodeProperty(line []byte) bool {
	prev := byte(' ')
	atStart := true
	for _, c := range line {
		switch {
		case c == ' ' || c == '\t':
			if prev != ' ' && prev != '\t' && !atStart {
				atStart = bytes.IndexByte([]byte(":-?,"), prev) >= 0
			}
		case (c == '!' || c == '&' || c == '*') && atStart:
			return true
		case c == '[' || c == '{':
			atStart = true
		case c == ',':
			atStart = true
		default:
			atStart = false
		}
		prev = c
	}
	return false
}
