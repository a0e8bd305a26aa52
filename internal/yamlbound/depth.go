package yamlbound

import "github.com/goccy/go-yaml/token"

// The nesting of a document is measured twice before the library builds a
// tree: on the raw bytes (scanDepth), which costs no allocation and stops
// at the first level too many, so that a document of 100000 "[" never
// reaches the lexer; and on the lexer's tokens (tokenDepth), which cannot
// be fooled by quoting the byte scan misreads. Both count the open flow
// collections plus the open block collections, told apart by the column of
// their entries ("- " items and "key:" keys).

// level is one open block collection: the column of its entries and
// whether it is a list.
type level struct {
	col int
	seq bool
}

type blocks []level

// open records an entry (a list item if seq, else a key) at col and
// returns how many block collections are then open.
func (b *blocks) open(col int, seq bool) int {
	s := *b
	for len(s) > 0 && s[len(s)-1].col > col {
		s = s[:len(s)-1]
	}
	if n := len(s); n > 0 && s[n-1].col == col {
		switch top := s[n-1]; {
		case top.seq == seq:
			*b = s
			return len(s)
		case seq:
			// A list written at its key's column ("key:\n- a") nests.
		default:
			// A key at the column of such a list ends the list.
			s = s[:n-1]
			if m := len(s); m > 0 && s[m-1].col == col && !s[m-1].seq {
				*b = s
				return len(s)
			}
		}
	}
	s = append(s, level{col, seq})
	*b = s
	return len(s)
}

// indent is the indentation of the innermost open block collection, -1
// at the top.
func (b blocks) indent() int {
	if len(b) == 0 {
		return -1
	}
	return b[len(b)-1].col - 1
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

// spaceAt reports whether data[i] is a space, a line end or the end.
func spaceAt(data []byte, i int) bool {
	return i >= len(data) || isBlank(data[i]) || data[i] == '\n'
}

// marker reports whether a line starts with a document marker (--- or ...).
func marker(data []byte, i int) bool {
	if i+3 > len(data) || !spaceAt(data, i+3) {
		return false
	}
	m := string(data[i : i+3])
	return m == "---" || m == "..."
}

// scanDepth estimates the nesting of a document from its bytes and
// returns the 1-based place where it first exceeds maxDepth. It reads
// comments, quoted scalars and block scalars as such, so that brackets in
// them do not count; a misreading of exotic YAML only lets a document on
// to tokenDepth.
func scanDepth(data []byte, maxDepth int) (line, col int, deep bool) {
	var b blocks
	flow := 0
	line, lineStart := 1, 0
	scalarIndent := -2 // inside a block scalar: lines indented more belong to it
	n := len(data)
	for i := 0; i < n; {
		indent := 0
		for i < n && data[i] == ' ' {
			i++
			indent++
		}
		endLine := func() {
			for i < n && data[i] != '\n' {
				i++
			}
			if i < n {
				i++
				line++
				lineStart = i
			}
		}
		if i >= n {
			break
		}
		if c := data[i]; c == '\n' || c == '\r' {
			endLine()
			continue
		}
		if flow == 0 && indent == 0 && marker(data, i) {
			b, scalarIndent = b[:0], -2
			i += 3
		} else if scalarIndent > -2 {
			if indent > scalarIndent {
				endLine()
				continue
			}
			scalarIndent = -2
		}
		if flow == 0 && indent == 0 && i < n && data[i] == '%' {
			endLine() // a directive
			continue
		}
		valueStart := flow == 0 // where a block node may start
		afterSpace := true      // the previous byte was a space or the line start
		var prev byte           // the previous byte, 0 at the line start
		keyCol := 0             // column of the scalar that may be a key
		for i < n && data[i] != '\n' {
			c := data[i]
			col := i - lineStart + 1
			switch {
			case isBlank(c):
				i++
				afterSpace, prev = true, c
				continue
			case c == '#' && afterSpace:
				for i < n && data[i] != '\n' {
					i++
				}
				continue
			case (c == '"' || c == '\'') && (valueStart || flow > 0 && (afterSpace || prev == '[' || prev == '{' || prev == ',' || prev == ':')):
				if flow == 0 {
					keyCol = col
				}
				i = skipQuoted(data, i, &line, &lineStart)
				valueStart = false
				afterSpace, prev = false, c
				continue
			case flow > 0:
				switch c {
				case '[', '{':
					flow++
					if len(b)+flow > maxDepth {
						return line, col, true
					}
				case ']', '}':
					flow--
				}
			case valueStart:
				switch {
				case (c == '-' || c == '?') && spaceAt(data, i+1):
					if b.open(col, c == '-')+flow > maxDepth {
						return line, col, true
					}
				case c == '[' || c == '{':
					keyCol, flow, valueStart = col, 1, false
					if len(b)+flow > maxDepth {
						return line, col, true
					}
				case c == '|' || c == '>':
					scalarIndent = b.indent()
					for i < n && data[i] != '\n' {
						i++
					}
					continue
				case c == '&' || c == '!':
					for i < n && !spaceAt(data, i) {
						i++
					}
					afterSpace, prev = false, c
					continue
				default:
					keyCol, valueStart = col, false
				}
			case c == ':' && keyCol > 0 && spaceAt(data, i+1):
				if b.open(keyCol, false)+flow > maxDepth {
					return line, keyCol, true
				}
				keyCol, valueStart = 0, true
			}
			i++
			afterSpace, prev = false, c
		}
	}
	return 0, 0, false
}

// skipQuoted returns the index after the quoted scalar that starts at i,
// counting the lines it spans.
func skipQuoted(data []byte, i int, line, lineStart *int) int {
	q := data[i]
	for i++; i < len(data); i++ {
		switch c := data[i]; {
		case c == '\n':
			*line++
			*lineStart = i + 1
		case c == '\\' && q == '"' && i+1 < len(data) && data[i+1] != '\n':
			i++
		case c == q && q == '\'' && i+1 < len(data) && data[i+1] == '\'':
			i++
		case c == q:
			return i + 1
		}
	}
	return i
}

// tokenDepth returns the first token at which the nesting of the tokens
// exceeds maxDepth, or nil.
func tokenDepth(tokens token.Tokens, maxDepth int) *token.Token {
	var b blocks
	flow := 0
	for i, tk := range tokens {
		if tk == nil || tk.Position == nil {
			continue
		}
		open := 0
		switch tk.Type {
		case token.DocumentHeaderType:
			b, flow = b[:0], 0
		case token.SequenceStartType, token.MappingStartType:
			flow++
			open = len(b) + flow
		case token.SequenceEndType, token.MappingEndType:
			flow = max(flow-1, 0)
		case token.SequenceEntryType:
			if flow == 0 {
				open = b.open(tk.Position.Column, true) + flow
			}
		case token.MappingKeyType:
			if flow == 0 {
				open = b.open(tk.Position.Column, false) + flow
			}
		case token.MappingValueType:
			if flow == 0 && i > 0 {
				if key := tokens[i-1]; key != nil && key.Position != nil && key.Position.Line == tk.Position.Line {
					open = b.open(key.Position.Column, false) + flow
				}
			}
		}
		if open > maxDepth {
			return tk
		}
	}
	return nil
}
