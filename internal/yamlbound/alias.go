package yamlbound

import "github.com/goccy/go-yaml/ast"

// anchor is what an anchor's value weighs once its own aliases are
// expanded.
type anchor struct {
	nodes  int // nodes in the expanded value
	height int // collection levels in the expanded value
	open   bool
}

// expansion walks a document in order, as a decoder meets its anchors and
// aliases, and measures it with every alias replaced by its anchor's
// value. The measure of an anchor is kept, so the walk is linear in the
// document however the aliases multiply.
type expansion struct {
	file    string
	lim     Limits
	anchors map[string]*anchor
	added   int // nodes that aliases added so far
}

// treeLevelsPerCollection bounds the recursion over the tree: a collection
// level is a few tree levels (mapping, key-value pair, anchor, tag).
const treeLevelsPerCollection = 4

func checkAliases(file string, f *ast.File, lim Limits) error {
	for _, d := range f.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		x := &expansion{file: file, lim: lim, anchors: map[string]*anchor{}}
		if _, _, err := x.walk(d.Body, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

// walk returns the expanded node count and collection height of n, at
// collection depth depth and tree depth tree.
func (x *expansion) walk(n ast.Node, depth, tree int) (nodes, height int, err error) {
	if n == nil {
		return 0, 0, nil
	}
	if tree > treeLevelsPerCollection*(x.lim.MaxDepth+1) {
		return 0, 0, errorAt(x.file, n.GetToken(), ErrTooDeep, "the %s nests deeper than %d levels", x.lim.What, x.lim.MaxDepth)
	}
	collection := func(children func(yield func(ast.Node) error) error) (int, int, error) {
		if depth+1 > x.lim.MaxDepth {
			return 0, 0, errorAt(x.file, n.GetToken(), ErrTooDeep, "the %s nests deeper than %d levels", x.lim.What, x.lim.MaxDepth)
		}
		nodes, height := 1, 1
		err := children(func(c ast.Node) error {
			cn, ch, err := x.walk(c, depth+1, tree+1)
			nodes, height = nodes+cn, max(height, ch+1)
			return err
		})
		return nodes, height, err
	}
	switch v := n.(type) {
	case *ast.MappingNode:
		if v == nil {
			return 0, 0, nil
		}
		return collection(func(yield func(ast.Node) error) error {
			for _, mv := range v.Values {
				if err := yield(mv); err != nil {
					return err
				}
			}
			return nil
		})
	case *ast.SequenceNode:
		if v == nil {
			return 0, 0, nil
		}
		return collection(func(yield func(ast.Node) error) error {
			for _, e := range v.Values {
				if err := yield(e); err != nil {
					return err
				}
			}
			return nil
		})
	case *ast.MappingValueNode:
		if v == nil {
			return 0, 0, nil
		}
		// A key-value pair is a node but not a level: its key and value
		// sit in the mapping's level.
		kn, kh, err := x.walk(v.Key, depth, tree+1)
		if err != nil {
			return 0, 0, err
		}
		vn, vh, err := x.walk(v.Value, depth, tree+1)
		return 1 + kn + vn, max(kh, vh), err
	case *ast.MappingKeyNode:
		if v == nil {
			return 0, 0, nil
		}
		return x.walk(v.Value, depth, tree+1)
	case *ast.TagNode:
		if v == nil {
			return 0, 0, nil
		}
		return x.walk(v.Value, depth, tree+1)
	case *ast.AnchorNode:
		if v == nil {
			return 0, 0, nil
		}
		name := tokenValue(v.Name)
		a := &anchor{open: true}
		x.anchors[name] = a
		nodes, height, err := x.walk(v.Value, depth, tree+1)
		a.nodes, a.height, a.open = nodes, height, false
		return nodes, height, err
	case *ast.AliasNode:
		if v == nil {
			return 0, 0, nil
		}
		name := tokenValue(v.Value)
		a, ok := x.anchors[name]
		if !ok {
			return 1, 0, nil // the decoder reports the missing anchor
		}
		if a.open {
			return 0, 0, errorAt(x.file, v.GetToken(), ErrRecursive, "alias *%s is inside its own anchor (a recursive structure)", name)
		}
		if depth+a.height > x.lim.MaxDepth {
			return 0, 0, errorAt(x.file, v.GetToken(), ErrTooDeep, "alias *%s makes the %s nest deeper than %d levels", name, x.lim.What, x.lim.MaxDepth)
		}
		x.added += a.nodes
		if x.added > x.lim.MaxAliasNodes {
			return 0, 0, errorAt(x.file, v.GetToken(), ErrAliasBomb, "aliases expand to more than %d nodes (at alias *%s)", x.lim.MaxAliasNodes, name)
		}
		return a.nodes, a.height, nil
	}
	return 1, 0, nil
}

func tokenValue(n ast.Node) string {
	if n == nil {
		return ""
	}
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return ""
}
