package serialvault

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Header values are strings, lists ([]any) and maps (map[string]any), nested
// to any depth, as the assertion format allows.

var headerNamePattern = regexp.MustCompile(`^[a-z](?:-?[a-z0-9])*$`)

// Header is one named header of an assertion, in the order it appears.
type Header struct {
	Name  string
	Value any // string, []any or map[string]any
}

// parseHeaders parses the header section of an assertion (without the
// blank line that ends it).
func parseHeaders(text string) ([]Header, error) {
	if text == "" {
		return nil, fmt.Errorf("no headers")
	}
	lines := strings.Split(text, "\n")
	var out []Header
	seen := map[string]bool{}
	for i := 0; i < len(lines); {
		line := lines[i]
		if line == "" || line[0] == ' ' {
			return nil, fmt.Errorf("header line %d: unexpected indentation or empty line", i+1)
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("header line %d: want \"name: value\", got %q", i+1, truncate(line))
		}
		if !headerNamePattern.MatchString(name) {
			return nil, fmt.Errorf("header line %d: invalid header name %q", i+1, truncate(name))
		}
		if seen[name] {
			return nil, fmt.Errorf("header %q repeated", name)
		}
		seen[name] = true
		var v any
		switch {
		case rest == "":
			var err error
			v, i, err = parseBlock(lines, i+1, 0)
			if err != nil {
				return nil, fmt.Errorf("header %q: %w", name, err)
			}
		case rest[0] == ' ':
			v = rest[1:]
			i++
		default:
			return nil, fmt.Errorf("header %q: want one space after the colon", name)
		}
		out = append(out, Header{Name: name, Value: v})
	}
	return out, nil
}

// parseBlock parses the value that follows an intro ("name:" or "-")
// written at indent: a multi-line text indented by indent+4, or a list or
// map whose entries are indented by indent+2. It returns the value and the
// index of the first line after it.
func parseBlock(lines []string, start, indent int) (any, int, error) {
	if start >= len(lines) {
		return nil, start, fmt.Errorf("empty value")
	}
	sp2 := strings.Repeat(" ", indent+2)
	sp4 := strings.Repeat(" ", indent+4)
	first := lines[start]
	switch {
	case strings.HasPrefix(first, sp2+"-"):
		return parseList(lines, start, indent)
	case strings.HasPrefix(first, sp4):
		i := start
		var text []string
		for i < len(lines) && strings.HasPrefix(lines[i], sp4) {
			text = append(text, lines[i][len(sp4):])
			i++
		}
		return strings.Join(text, "\n"), i, nil
	case strings.HasPrefix(first, sp2) && len(first) > len(sp2) && first[len(sp2)] != ' ':
		return parseMap(lines, start, indent)
	}
	return nil, start, fmt.Errorf("empty value or wrong indentation at %q", truncate(first))
}

func parseList(lines []string, start, indent int) (any, int, error) {
	sp2 := strings.Repeat(" ", indent+2)
	list := []any{}
	i := start
	for i < len(lines) && strings.HasPrefix(lines[i], sp2+"-") {
		entry := lines[i][len(sp2)+1:]
		switch {
		case entry == "":
			v, next, err := parseBlock(lines, i+1, indent+2)
			if err != nil {
				return nil, i, fmt.Errorf("list entry %d: %w", len(list)+1, err)
			}
			list = append(list, v)
			i = next
		case entry[0] == ' ':
			list = append(list, entry[1:])
			i++
		default:
			return nil, i, fmt.Errorf("list entry %d: want \"- value\"", len(list)+1)
		}
	}
	return list, i, nil
}

func parseMap(lines []string, start, indent int) (any, int, error) {
	sp2 := strings.Repeat(" ", indent+2)
	m := map[string]any{}
	i := start
	for i < len(lines) && strings.HasPrefix(lines[i], sp2) && len(lines[i]) > len(sp2) &&
		lines[i][len(sp2)] != ' ' && lines[i][len(sp2)] != '-' {
		key, rest, ok := strings.Cut(lines[i][len(sp2):], ":")
		if !ok || !headerNamePattern.MatchString(key) {
			return nil, i, fmt.Errorf("invalid map entry %q", truncate(lines[i]))
		}
		if _, dup := m[key]; dup {
			return nil, i, fmt.Errorf("map key %q repeated", key)
		}
		switch {
		case rest == "":
			v, next, err := parseBlock(lines, i+1, indent+2)
			if err != nil {
				return nil, i, fmt.Errorf("map key %q: %w", key, err)
			}
			m[key] = v
			i = next
		case rest[0] == ' ':
			m[key] = rest[1:]
			i++
		default:
			return nil, i, fmt.Errorf("map key %q: want one space after the colon", key)
		}
	}
	return m, i, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// appendHeader writes one header (or nested entry) introduced by intro at
// indent, the way the format encodes it.
func appendHeader(b *strings.Builder, intro string, v any, indent int) error {
	switch x := v.(type) {
	case string:
		if !strings.Contains(x, "\n") {
			b.WriteString(intro)
			b.WriteByte(' ')
			b.WriteString(x)
			b.WriteByte('\n')
			return nil
		}
		b.WriteString(intro)
		b.WriteByte('\n')
		pad := strings.Repeat(" ", indent+4)
		for _, line := range strings.Split(x, "\n") {
			b.WriteString(pad)
			b.WriteString(line)
			b.WriteByte('\n')
		}
	case []string:
		l := make([]any, len(x))
		for i, s := range x {
			l[i] = s
		}
		return appendHeader(b, intro, l, indent)
	case []any:
		if len(x) == 0 {
			return nil
		}
		b.WriteString(intro)
		b.WriteByte('\n')
		pad := strings.Repeat(" ", indent+2)
		for _, e := range x {
			if err := appendHeader(b, pad+"-", e, indent+2); err != nil {
				return err
			}
		}
	case map[string]any:
		if len(x) == 0 {
			return nil
		}
		b.WriteString(intro)
		b.WriteByte('\n')
		keys := make([]string, 0, len(x))
		for k := range x {
			if !headerNamePattern.MatchString(k) {
				return fmt.Errorf("invalid map key %q", k)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		pad := strings.Repeat(" ", indent+2)
		for _, k := range keys {
			if err := appendHeader(b, pad+k+":", x[k], indent+2); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unsupported header value type %T", v)
	}
	return nil
}

// isEmptyValue reports whether a value is left out when encoding.
func isEmptyValue(v any) bool {
	switch x := v.(type) {
	case []any:
		return len(x) == 0
	case []string:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	case nil:
		return true
	}
	return false
}
