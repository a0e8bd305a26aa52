// Package yamlbound parses YAML that comes from outside the program (station
// files, boot profiles) with bounds: on the document's size, on its nesting
// depth (checked on the raw bytes and on the tokens before the library
// builds a tree, so a deeply nested document is refused at once and with
// little memory) and on the nodes that aliases add when they are expanded
// ("billion laughs"). A panic inside the YAML library becomes an error.
// Every error is an *Error naming the file and, where known, the line and
// column.
package yamlbound

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Limits bound one kind of document. A zero field takes its default.
type Limits struct {
	// What names the kind of document in errors, e.g. "station file".
	What string
	// MaxBytes bounds the document's size.
	MaxBytes int
	// MaxDepth bounds the nesting of collections (mappings and lists,
	// block or flow), also once aliases are expanded.
	MaxDepth int
	// MaxAliasNodes bounds the nodes that expanding every alias adds to
	// the document.
	MaxAliasNodes int
}

// Defaults of Limits.
const (
	DefaultMaxBytes      = 1 << 20
	DefaultMaxDepth      = 64
	DefaultMaxAliasNodes = 100000
)

func (l Limits) withDefaults() Limits {
	if l.What == "" {
		l.What = "YAML file"
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxAliasNodes <= 0 {
		l.MaxAliasNodes = DefaultMaxAliasNodes
	}
	return l
}

// Reasons a document is refused; test them with errors.Is.
var (
	ErrTooLarge     = errors.New("document too large")
	ErrTooDeep      = errors.New("document nested too deeply")
	ErrAliasBomb    = errors.New("aliases expand too much")
	ErrRecursive    = errors.New("recursive alias")
	ErrLibraryPanic = errors.New("YAML library failure")
	ErrDocuments    = errors.New("more than one YAML document")
)

// Error is a document that was refused or could not be parsed or decoded.
type Error struct {
	File      string
	Line, Col int // 1-based; 0 when the place is not known
	Msg       string
	Err       error // one of the Err* reasons, or the library's own error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, max(e.Col, 1), e.Msg)
	}
	return e.File + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func errorAt(file string, tk *token.Token, reason error, format string, args ...any) *Error {
	e := &Error{File: file, Msg: fmt.Sprintf(format, args...), Err: reason}
	if tk != nil && tk.Position != nil {
		e.Line, e.Col = tk.Position.Line, tk.Position.Column
	}
	return e
}

// fromLibrary turns an error of the YAML library into an *Error, keeping
// the library's position and message.
func fromLibrary(file string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var ye yaml.Error
	if errors.As(err, &ye) {
		return errorAt(file, ye.GetToken(), err, "%s", ye.GetMessage())
	}
	return &Error{File: file, Msg: err.Error(), Err: err}
}

// ReadFile reads a file of at most lim.MaxBytes bytes. A larger file is
// refused without reading it all (also a device or pipe that never ends).
func ReadFile(path string, lim Limits) ([]byte, error) {
	lim = lim.withDefaults()
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", lim.What, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > int64(lim.MaxBytes) {
		return nil, tooLarge(path, lim, fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(lim.MaxBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", lim.What, err)
	}
	if len(data) > lim.MaxBytes {
		return nil, tooLarge(path, lim, -1)
	}
	return data, nil
}

func tooLarge(file string, lim Limits, size int64) *Error {
	msg := fmt.Sprintf("the %s is larger than the %s limit", lim.What, humanBytes(int64(lim.MaxBytes)))
	if size >= 0 {
		msg = fmt.Sprintf("the %s is %d bytes, over the %s limit", lim.What, size, humanBytes(int64(lim.MaxBytes)))
	}
	return &Error{File: file, Err: ErrTooLarge, Msg: msg}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d-byte", n)
}

// Parse checks data against the limits and parses it into a syntax tree.
// file names the document in errors.
func Parse(file string, data []byte, lim Limits, opts ...parser.Option) (f *ast.File, err error) {
	lim = lim.withDefaults()
	if len(data) > lim.MaxBytes {
		return nil, tooLarge(file, lim, int64(len(data)))
	}
	if line, col, deep := scanDepth(data, lim.MaxDepth); deep {
		return nil, &Error{File: file, Line: line, Col: col, Err: ErrTooDeep,
			Msg: fmt.Sprintf("the %s nests deeper than %d levels", lim.What, lim.MaxDepth)}
	}
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, libraryPanic(file, r)
		}
	}()
	tokens := lexer.Tokenize(string(data))
	if tk := tokenDepth(tokens, lim.MaxDepth); tk != nil {
		return nil, errorAt(file, tk, ErrTooDeep, "the %s nests deeper than %d levels", lim.What, lim.MaxDepth)
	}
	f, err = parser.Parse(tokens, 0, opts...)
	if err != nil {
		return nil, fromLibrary(file, err)
	}
	if err := checkAliases(file, f, lim); err != nil {
		return nil, err
	}
	return f, nil
}

func libraryPanic(file string, r any) *Error {
	return &Error{File: file, Err: ErrLibraryPanic,
		Msg: fmt.Sprintf("cannot read this YAML: the YAML library failed (%v)", r)}
}

// Body returns the body of the file's single document: nil for an empty
// file, an ErrDocuments error when there is more than one.
func Body(file string, f *ast.File) (ast.Node, error) {
	var body ast.Node
	for i, d := range f.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		if body != nil {
			line, col := nodeStart(d.Body)
			return nil, &Error{File: file, Line: line, Col: col, Err: ErrDocuments,
				Msg: fmt.Sprintf("only one YAML document is allowed (document %d)", i+1)}
		}
		body = d.Body
	}
	return body, nil
}

// Decode checks data against the limits, parses it and decodes its single
// document into v (a pointer) with the library's decoder.
func Decode(file string, data []byte, v any, lim Limits, opts ...yaml.DecodeOption) error {
	f, err := Parse(file, data, lim)
	if err != nil {
		return err
	}
	body, err := Body(file, f)
	if err != nil || body == nil {
		return err
	}
	return DecodeNode(file, body, v, opts...)
}

// DecodeNode decodes a node of a tree that Parse accepted into v (a
// pointer) with the library's decoder. A panic in the library becomes an
// ErrLibraryPanic error naming the file.
func DecodeNode(file string, n ast.Node, v any, opts ...yaml.DecodeOption) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = libraryPanic(file, r)
		}
	}()
	if err := yaml.NodeToValue(n, v, opts...); err != nil {
		return fromLibrary(file, err)
	}
	return nil
}
