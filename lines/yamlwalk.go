package lines

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/flashstation/flashstation/internal/yamlbound"
)

// Position is a place in a configuration file, 1-based.
type Position struct {
	Line, Col int
}

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File    string // the file name as given to the loader
	Pos     Position
	Path    string // field path such as slots[2].console.baud; empty for the document
	Msg     string
	Warning bool // true: worth a look, does not stop the station
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Pos.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Pos.Line, p.Pos.Col)
	}
	b.WriteString(": ")
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one configuration file, in file order.
// As an error it lists them all, one per line.
type Problems []Problem

// Errors returns the problems that are not warnings.
func (ps Problems) Errors() Problems {
	var out Problems
	for _, p := range ps {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out
}

// Warnings returns the problems that are warnings.
func (ps Problems) Warnings() Problems {
	var out Problems
	for _, p := range ps {
		if p.Warning {
			out = append(out, p)
		}
	}
	return out
}

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i].Pos, ps[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// walker decodes a goccy/go-yaml syntax tree by hand, so that every problem
// (unknown key, wrong type, duplicate key) is collected with its position
// instead of stopping at the first one.
type walker struct {
	file     string
	problems Problems
	anchors  map[string][]anchorDef // every anchor in the document, in order
	pos      map[string]Position    // field path -> position of its value
	errPaths map[string]bool        // field paths with an error-level problem
	depth    int
	budget   int // merge-key entries left to expand (stops "billion laughs")
}

const (
	// maxDepth bounds the nesting of a station file (yamlbound refuses a
	// deeper one before it is parsed) and the walker's own recursion.
	maxDepth       = 64
	maxMergeBudget = 100000
	// maxTreeDepth bounds recursion over the syntax tree, where a level of
	// nesting is a few tree levels (mapping, key-value pair, anchor, tag).
	maxTreeDepth = 4 * (maxDepth + 1)
)

func newWalker(file string) *walker {
	return &walker{file: file, anchors: map[string][]anchorDef{}, pos: map[string]Position{},
		errPaths: map[string]bool{}, budget: maxMergeBudget}
}

func (w *walker) add(pos Position, path string, warning bool, format string, args ...any) {
	if pos.Line < 1 || pos.Col < 1 {
		pos = w.at(path)
	}
	w.problems = append(w.problems, Problem{File: w.file, Pos: pos, Path: path, Msg: fmt.Sprintf(format, args...), Warning: warning})
	if !warning {
		w.errPaths[path] = true
	}
}

// reported reports whether an error was already found at path or at one of
// its parents (a value of the wrong type). It costs a lookup per level of
// the path, whatever the number of problems.
func (w *walker) reported(path string) bool {
	if w.errPaths[path] {
		return true
	}
	for i := 1; i < len(path); i++ {
		if (path[i] == '.' || path[i] == '[') && w.errPaths[path[:i]] {
			return true
		}
	}
	return false
}

func (w *walker) errorf(pos Position, path, format string, args ...any) {
	w.add(pos, path, false, format, args...)
}

// at returns the recorded position of a field path, falling back to its
// closest recorded parent (a missing field is reported at its parent).
func (w *walker) at(path string) Position {
	for p := path; ; {
		if pos, ok := w.pos[p]; ok {
			return pos
		}
		i := strings.LastIndexAny(p, ".[")
		if i <= 0 {
			break
		}
		p = p[:i]
	}
	return Position{Line: 1, Col: 1}
}

// parseDocument parses data within the station file limits and returns the
// body of its single document, or nil after recording a problem.
func (w *walker) parseDocument(data []byte) ast.Node {
	f, err := yamlbound.Parse(w.file, data, stationLimits, parser.AllowDuplicateMapKey())
	if err != nil {
		pos := Position{Line: 1, Col: 1}
		msg := err.Error()
		var be *yamlbound.Error
		if errors.As(err, &be) {
			if be.Line > 0 {
				pos = Position{Line: be.Line, Col: max(be.Col, 1)}
			}
			msg = be.Msg
			var ye yaml.Error
			if errors.As(be.Err, &ye) {
				msg = "YAML syntax: " + msg
			}
		}
		w.errorf(pos, "", "%s", msg)
		return nil
	}
	var body ast.Node
	for i, d := range f.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		if body != nil {
			// The first document is still checked.
			w.errorf(nodePos(d.Body), "", "only one YAML document is allowed (document %d)", i+1)
			break
		}
		body = d.Body
	}
	if body == nil {
		w.errorf(Position{Line: 1, Col: 1}, "", "the file is empty")
	}
	return body
}

func nodePos(n ast.Node) Position {
	switch v := n.(type) {
	case nil:
		return Position{}
	case *ast.MappingNode:
		if len(v.Values) > 0 {
			return nodePos(v.Values[0].Key)
		}
	case *ast.MappingValueNode:
		return nodePos(v.Key)
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return Position{}
	}
	return Position{Line: tk.Position.Line, Col: tk.Position.Column}
}

// resolve strips anchors, tags and aliases, recording anchors as it meets
// them. It returns nil for a null value.
func (w *walker) resolve(n ast.Node, path string) ast.Node {
	for i := 0; i < maxDepth; i++ {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.AliasNode:
			name := anchorName(v.Value)
			target, ok := w.anchorBefore(name, nodePos(v))
			if !ok {
				w.errorf(nodePos(v), path, "alias *%s names no anchor defined before it", name)
				return nil
			}
			n = target
		case *ast.NullNode:
			return nil
		default:
			return n
		}
	}
	w.errorf(nodePos(n), path, "aliases nest too deeply")
	return nil
}

type anchorDef struct {
	pos  Position
	node ast.Node
}

// collectAnchors records every anchor of the document, so that an alias
// finds its anchor even where the anchor sits under a key the station file
// does not know.
func (w *walker) collectAnchors(n ast.Node, depth int) {
	if n == nil || depth > maxTreeDepth {
		return
	}
	switch v := n.(type) {
	case *ast.AnchorNode:
		if name := anchorName(v.Name); name != "" {
			w.anchors[name] = append(w.anchors[name], anchorDef{nodePos(v), v.Value})
		}
		w.collectAnchors(v.Value, depth+1)
	case *ast.TagNode:
		w.collectAnchors(v.Value, depth+1)
	case *ast.MappingNode:
		for _, mv := range v.Values {
			w.collectAnchors(mv.Key, depth+1)
			w.collectAnchors(mv.Value, depth+1)
		}
	case *ast.MappingValueNode:
		w.collectAnchors(v.Key, depth+1)
		w.collectAnchors(v.Value, depth+1)
	case *ast.SequenceNode:
		for _, e := range v.Values {
			w.collectAnchors(e, depth+1)
		}
	}
}

// sortAnchors puts every anchor's definitions in file order (the walk
// meets them so; this makes sure of it for anchorBefore).
func (w *walker) sortAnchors() {
	for _, defs := range w.anchors {
		sort.SliceStable(defs, func(i, j int) bool {
			a, b := defs[i].pos, defs[j].pos
			return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
		})
	}
}

// anchorBefore returns the latest definition of an anchor before pos. The
// definitions are in file order, so it is a binary search: a file that
// redefines one anchor for each of thousands of slots stays linear.
func (w *walker) anchorBefore(name string, pos Position) (ast.Node, bool) {
	defs := w.anchors[name]
	i := sort.Search(len(defs), func(i int) bool {
		d := defs[i].pos
		return d.Line > pos.Line || d.Line == pos.Line && d.Col >= pos.Col
	})
	if i == 0 || defs[i-1].node == nil {
		return nil, false
	}
	return defs[i-1].node, true
}

func anchorName(n ast.Node) string {
	if n == nil {
		return ""
	}
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return ""
}

func kindName(n ast.Node) string {
	switch n.(type) {
	case nil:
		return "nothing (null)"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	}
	return "a " + strings.ToLower(n.Type().String())
}

// field decodes one key of a mapping.
type field struct {
	name   string
	decode func(n ast.Node, path string)
}

// mapEntry is one key of a mapping after merge keys are expanded.
type mapEntry struct {
	key   string
	pos   Position
	value ast.Node
}

// entries lists a mapping's keys, expanding YAML merge keys (<<: *anchor):
// keys written in the mapping override merged ones.
func (w *walker) entries(m *ast.MappingNode, path string) []mapEntry {
	var own, merged []mapEntry
	for _, mv := range m.Values {
		if mv.Key != nil && mv.Key.IsMergeKey() {
			w.depth++
			if w.depth < maxDepth && w.budget > 0 {
				for _, src := range w.mergeSources(mv.Value, path) {
					w.budget -= len(src.Values)
					if w.budget <= 0 {
						if w.budget+len(src.Values) > 0 {
							w.errorf(nodePos(mv.Key), path, "merge keys expand to too many entries")
						}
						break
					}
					merged = append(merged, w.entries(src, path)...)
				}
			}
			w.depth--
			continue
		}
		key := ""
		if s, ok := mv.Key.(ast.ScalarNode); ok {
			key = fmt.Sprint(s.GetValue())
		}
		own = append(own, mapEntry{key: key, pos: nodePos(mv.Key), value: mv.Value})
	}
	seen := map[string]bool{}
	for _, e := range own {
		seen[e.key] = true
	}
	out := own
	for _, e := range merged {
		if !seen[e.key] {
			seen[e.key] = true
			out = append(out, e)
		}
	}
	return out
}

func (w *walker) mergeSources(n ast.Node, path string) []*ast.MappingNode {
	raw := n
	n = w.resolve(n, path)
	switch v := n.(type) {
	case nil:
		if _, isAlias := raw.(*ast.AliasNode); !isAlias {
			w.errorf(nodePos(raw), path, "a merge key (<<) takes a mapping or a list of mappings")
		}
		return nil
	case *ast.MappingNode:
		return []*ast.MappingNode{v}
	case *ast.SequenceNode:
		var out []*ast.MappingNode
		for _, e := range v.Values {
			if m, ok := w.resolve(e, path).(*ast.MappingNode); ok {
				out = append(out, m)
			} else {
				w.errorf(nodePos(e), path, "a merge key (<<) takes mappings")
			}
		}
		return out
	}
	w.errorf(nodePos(n), path, "a merge key (<<) takes a mapping or a list of mappings, not %s", kindName(n))
	return nil
}

// object decodes a mapping with the given fields. It reports unknown and
// duplicate keys and returns whether the value was a mapping.
func (w *walker) object(n ast.Node, path string, fields ...field) bool {
	raw := n
	n = w.resolve(n, path)
	if n == nil {
		if raw != nil {
			w.pos[path] = nodePos(raw)
		}
		return false
	}
	if mv, ok := n.(*ast.MappingValueNode); ok {
		n = ast.Mapping(mv.GetToken(), false, mv)
	}
	m, ok := n.(*ast.MappingNode)
	if !ok {
		w.errorf(nodePos(n), path, "want a mapping, got %s", kindName(n))
		return false
	}
	if _, ok := w.pos[path]; !ok {
		w.pos[path] = nodePos(m)
	}
	byName := make(map[string]field, len(fields))
	names := make([]string, len(fields))
	for i, f := range fields {
		byName[f.name] = f
		names[i] = f.name
	}
	seen := map[string]Position{}
	for _, e := range w.entries(m, path) {
		sub := joinPath(path, e.key)
		if first, dup := seen[e.key]; dup {
			w.errorf(e.pos, sub, "duplicate key (first at line %d)", first.Line)
			continue
		}
		seen[e.key] = e.pos
		f, ok := byName[e.key]
		if !ok {
			msg := fmt.Sprintf("unknown key %q", e.key)
			if s := suggest(e.key, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += fmt.Sprintf(" (known: %s)", strings.Join(names, ", "))
			}
			w.errorf(e.pos, sub, "%s", msg)
			continue
		}
		vp := nodePos(e.value)
		if e.value == nil || vp.Line == 0 {
			vp = e.pos
		}
		w.pos[sub] = vp
		f.decode(e.value, sub)
	}
	return true
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest returns the known name closest to key when it is a likely typo.
func suggest(key string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(key, n); d < bestD && 2*d < len(key) {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// list decodes a sequence, calling each for every element.
func (w *walker) list(n ast.Node, path string, each func(i int, n ast.Node, path string)) {
	n = w.resolve(n, path)
	if n == nil {
		return
	}
	s, ok := n.(*ast.SequenceNode)
	if !ok {
		w.errorf(nodePos(n), path, "want a list, got %s", kindName(n))
		return
	}
	for i, e := range s.Values {
		sub := fmt.Sprintf("%s[%d]", path, i)
		w.pos[sub] = nodePos(e)
		each(i, e, sub)
	}
}

// scalarText returns a scalar's text. Numbers are kept as written so that
// `id: 01` stays "01".
func scalarText(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		if v.Value != nil {
			return v.Value.Value, true
		}
		return "", true
	case *ast.IntegerNode, *ast.FloatNode:
		return n.GetToken().Value, true
	}
	return "", false
}

func (w *walker) str(dst *string) func(ast.Node, string) {
	return func(n ast.Node, path string) {
		n = w.resolve(n, path)
		if n == nil {
			*dst = ""
			return
		}
		s, ok := scalarText(n)
		if !ok {
			w.errorf(nodePos(n), path, "want a string, got %s", kindName(n))
			return
		}
		*dst = s
	}
}

func (w *walker) strList(dst *[]string) func(ast.Node, string) {
	return func(n ast.Node, path string) {
		w.list(n, path, func(_ int, e ast.Node, sub string) {
			var s string
			w.str(&s)(e, sub)
			*dst = append(*dst, s)
		})
	}
}

func (w *walker) integer(dst *int) func(ast.Node, string) {
	return func(n ast.Node, path string) {
		n = w.resolve(n, path)
		iv, ok := n.(*ast.IntegerNode)
		if !ok {
			got := kindName(n)
			if s, isStr := n.(*ast.StringNode); isStr {
				got = fmt.Sprintf("a string %q", s.Value)
			}
			w.errorf(nodePos(n), path, "want an integer, got %s", got)
			return
		}
		v, err := strconv.ParseInt(iv.GetToken().Value, 0, 64)
		if err != nil {
			// goccy parses 0o, 0x, 0b and _ separators; fall back to its value.
			switch x := iv.Value.(type) {
			case int64:
				v, err = x, nil
			case uint64:
				if x <= 1<<62 {
					v, err = int64(x), nil
				}
			}
		}
		if err != nil || v > 1<<31 || v < -(1<<31) {
			w.errorf(nodePos(n), path, "integer %s is out of range", iv.GetToken().Value)
			return
		}
		*dst = int(v)
	}
}

func (w *walker) boolean(dst *bool) func(ast.Node, string) {
	return func(n ast.Node, path string) {
		n = w.resolve(n, path)
		b, ok := n.(*ast.BoolNode)
		if !ok {
			w.errorf(nodePos(n), path, "want true or false, got %s", kindName(n))
			return
		}
		*dst = b.Value
	}
}
