package yamlbound

import (
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// Position returns the 1-based place of the value at a field path such as
// "stages[2].timeout" under n, or of the closest parent found when the
// path goes on where the tree does not (a missing key, a merged or aliased
// value). It returns 0, 0 only when n itself has no position.
func Position(n ast.Node, path string) (line, col int) {
	line, col = nodeStart(n)
	for _, seg := range splitPath(path) {
		var next ast.Node
		var pair *ast.MappingValueNode
		switch v := unwrap(n).(type) {
		case *ast.MappingNode:
			for _, mv := range v.Values {
				if mv != nil && seg.index < 0 && tokenValue(mv.Key) == seg.key {
					pair = mv
					break
				}
			}
		case *ast.MappingValueNode:
			if seg.index < 0 && tokenValue(v.Key) == seg.key {
				pair = v
			}
		case *ast.SequenceNode:
			if seg.index >= 0 && seg.index < len(v.Values) {
				next = v.Values[seg.index]
			}
		}
		if pair != nil {
			next = pair.Value
			if l, _ := nodeStart(next); l == 0 || next.Type() == ast.NullType {
				// An empty value: its key is the place.
				return nodeStart(pair.Key)
			}
		}
		if next == nil {
			return line, col
		}
		n = next
		if l, c := nodeStart(n); l > 0 {
			line, col = l, c
		}
	}
	return line, col
}

type segment struct {
	key   string
	index int // -1 for a key
}

// splitPath splits "a.b[2].c" into a, b, [2], c.
func splitPath(path string) []segment {
	var out []segment
	for _, part := range strings.Split(path, ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			switch {
			case i < 0:
				out = append(out, segment{part, -1})
				part = ""
			case i > 0:
				out = append(out, segment{part[:i], -1})
				part = part[i:]
			default:
				j := strings.IndexByte(part, ']')
				if j < 0 {
					return out
				}
				k, err := strconv.Atoi(part[1:j])
				if err != nil {
					return out
				}
				out = append(out, segment{index: k})
				part = part[j+1:]
			}
		}
	}
	return out
}

// unwrap strips anchors and tags.
func unwrap(n ast.Node) ast.Node {
	for range 8 {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		default:
			return n
		}
	}
	return n
}

// nodeStart is where a node starts: a mapping at its first key.
func nodeStart(n ast.Node) (line, col int) {
	switch v := n.(type) {
	case nil:
		return 0, 0
	case *ast.MappingNode:
		if v != nil && len(v.Values) > 0 && v.Values[0] != nil && !v.IsFlowStyle {
			return nodeStart(v.Values[0].Key)
		}
	case *ast.MappingValueNode:
		if v != nil {
			return nodeStart(v.Key)
		}
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return 0, 0
	}
	return tk.Position.Line, tk.Position.Column
}
