package yamlbound_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/flashstation/flashstation/internal/yamlbound"
)

// laughs is a billion-laughs document: nine levels of nine aliases each.
func laughs(merge bool) string {
	var b strings.Builder
	if merge {
		b.WriteString("a: &a {x: 1, y: 2}\n")
	} else {
		b.WriteString("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	}
	prev := "a"
	for _, c := range "bcdefghi" {
		refs := strings.TrimSuffix(strings.Repeat("*"+prev+", ", 9), ", ")
		if merge {
			b.WriteString(string(c) + ": &" + string(c) + " {<<: [" + refs + "]}\n")
		} else {
			b.WriteString(string(c) + ": &" + string(c) + " [" + refs + "]\n")
		}
		prev = string(c)
	}
	b.WriteString("top: *i\n")
	return b.String()
}

func TestParseLimits(t *testing.T) {
	lim := yamlbound.Limits{What: "test file", MaxBytes: 1 << 20, MaxDepth: 4, MaxAliasNodes: 1000}
	for _, tc := range []struct {
		name string
		doc  string
		want error  // nil: accepted
		at   string // "line:col" of the error, "" when not positioned
	}{
		// Brackets and indentation that do not nest.
		{"flat", "a: 1\nb: [x, y]\nc: {d: e}\n", nil, ""},
		{"depth 4 in flow", "a: [[[x]]]\n", nil, ""},
		{"depth 4 in blocks", "a:\n  b:\n    c:\n      d: 1\n", nil, ""},
		{"depth 4 in lists", "- - - - x\n", nil, ""},
		{"brackets in comments", "a: 1 # [[[[[[\n# {{{{{{\nb: 2\n", nil, ""},
		{"brackets in quotes", "a: \"[[[[[[\\\"{{{{\"\nb: '[[[[''[[['\nc: [\"[[[[[[\", '{{{{{']\n", nil, ""},
		{"multi-line quotes", "a: \"[[[[\n  [[[[\"\nb: 'x\n  {{{{{'\n", nil, ""},
		{"brackets in plain scalars", "a: x[1][2][3][4][5]\nb: U-Boot( SPL)? \\d{4}\\.\\d{2}\nc: it's [[[[[\n", nil, ""},
		{"block scalars", "a: |\n  [[[[[[\n  - - - - - -\n\n  {{{{{{\nb: >-\n  [[[[[[\n", nil, ""},
		{"block scalar in a list", "- a:\n  - |\n    [[[[[[[\n    - - - - - - -\n  - x\n", nil, ""},
		{"documents", "a: [[[x]]]\n---\nb: [[[x]]]\n", nil, ""},
		{"anchors and merges", "base: &b {x: 1, y: 2}\ns:\n  - {<<: *b, y: 3}\n  - {<<: *b}\n", nil, ""},
		{"unknown alias is for the decoder", "a: *nowhere\n", nil, ""},

		{"too large", strings.Repeat("a", 1<<20+1), yamlbound.ErrTooLarge, ""},
		{"deep flow", "a: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n", yamlbound.ErrTooDeep, "1:7"},
		{"deep flow maps", "a: " + strings.Repeat("{a: ", 100000) + "1" + strings.Repeat("}", 100000), yamlbound.ErrTooDeep, "1:16"},
		{"deep inline lists", "a:\n  " + strings.Repeat("- ", 100000) + "x\n", yamlbound.ErrTooDeep, "2:9"},
		{"deep blocks", "a:\n b:\n  c:\n   d:\n    e: 1\n", yamlbound.ErrTooDeep, "5:5"},
		{"deep lists at their key's column", "a:\n- b:\n  - c:\n    - d\n", yamlbound.ErrTooDeep, "3:5"},
		{"deep behind a document marker", "--- " + strings.Repeat("[", 10) + strings.Repeat("]", 10) + "\n", yamlbound.ErrTooDeep, "1:9"},
		{"deep through aliases", "a: &a [[[x]]]\nb: [*a]\n", yamlbound.ErrTooDeep, "2:5"},
		{"billion laughs", laughs(false), yamlbound.ErrAliasBomb, "4:8"},
		{"billion laughs with merge keys", laughs(true), yamlbound.ErrAliasBomb, "4:13"},
		{"many aliases", "a: &a [x, y]\nb: [" + strings.TrimSuffix(strings.Repeat("*a, ", 400), ", ") + "]\n", yamlbound.ErrAliasBomb, "2:1337"},
		{"recursive alias", "a: &a [x, *a]\n", yamlbound.ErrRecursive, "1:11"},
		{"syntax", "a: [\n", nil, "?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := lim
			if strings.Contains(tc.name, "laughs") {
				lim.MaxDepth = 64
			}
			f, err := yamlbound.Parse("doc.yaml", []byte(tc.doc), lim)
			if tc.want == nil && tc.at == "" {
				if err != nil || f == nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var be *yamlbound.Error
			if !errors.As(err, &be) {
				t.Fatalf("error %v (%T), want a *yamlbound.Error", err, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if be.File != "doc.yaml" || !strings.HasPrefix(err.Error(), "doc.yaml:") {
				t.Errorf("error does not name the file: %v", err)
			}
			switch {
			case tc.at == "?":
				if be.Line < 1 {
					t.Errorf("error %v has no position", err)
				}
			case tc.at != "":
				if !strings.HasPrefix(err.Error(), "doc.yaml:"+tc.at+": ") {
					t.Errorf("error %v, want it at %s", err, tc.at)
				}
			}
		})
	}
}

func TestTooLargeMessage(t *testing.T) {
	_, err := yamlbound.Parse("big.yaml", make([]byte, 3<<20), yamlbound.Limits{What: "station file", MaxBytes: 1 << 20})
	if want := "big.yaml: the station file is 3145728 bytes, over the 1 MiB limit"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small.yaml")
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(small, []byte("a: 1\n"), 0o644)
	os.WriteFile(big, make([]byte, 2048), 0o644)
	lim := yamlbound.Limits{What: "profile", MaxBytes: 1024}
	if b, err := yamlbound.ReadFile(small, lim); err != nil || string(b) != "a: 1\n" {
		t.Errorf("small: %q %v", b, err)
	}
	for _, path := range []string{big, "/dev/zero"} {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		_, err := yamlbound.ReadFile(path, lim)
		if !errors.Is(err, yamlbound.ErrTooLarge) || !strings.HasPrefix(err.Error(), path+": the profile is ") ||
			!strings.HasSuffix(err.Error(), " the 1 KiB limit") {
			t.Errorf("%s: %v", path, err)
		}
	}
	if _, err := yamlbound.ReadFile(filepath.Join(dir, "none.yaml"), lim); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

type stage struct {
	Name    string   `yaml:"name"`
	Markers []string `yaml:"markers"`
}

type profile struct {
	Base   string  `yaml:"base"`
	Stages []stage `yaml:"stages"`
}

// panicky fails inside the library's decoder.
type panicky struct{}

func (*panicky) UnmarshalYAML([]byte) error { panic("boom") }

func TestDecode(t *testing.T) {
	lim := yamlbound.Limits{What: "profile"}
	var p profile
	if err := yamlbound.Decode("p.yaml", []byte("base: uc20\nstages: [{name: a, markers: [x]}]\n"), &p, lim, yaml.DisallowUnknownField()); err != nil ||
		p.Base != "uc20" || len(p.Stages) != 1 || p.Stages[0].Markers[0] != "x" {
		t.Fatalf("%+v %v", p, err)
	}
	for _, tc := range []struct {
		name, doc string
		v         any
		want      string
		reason    error
	}{
		{"unknown field", "base: uc20\nstagez: []\n", &profile{}, `p.yaml:2:1: unknown field "stagez"`, nil},
		{"wrong type", "base: uc20\nstages: 3\n", &profile{}, "p.yaml:2:9: ", nil},
		{"two documents", "base: uc20\n---\nbase: uc22\n", &profile{}, "p.yaml:3:", yamlbound.ErrDocuments},
		{"library panic", "x: 1\n", &panicky{}, "p.yaml: cannot read this YAML: the YAML library failed (boom)", yamlbound.ErrLibraryPanic},
		// FuzzParseProfile's crasher: goccy/go-yaml 1.19.2 dereferences nil
		// on a tag without a list where a list is expected.
		{"tagged scalar for a list", "A: 0\nstages:\n  ! 0\n00000008: 0", &profile{}, "p.yaml", nil},
		{"alias bomb", laughs(false), &map[string]any{}, "p.yaml:6:8: aliases expand to more than 100000 nodes", yamlbound.ErrAliasBomb},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := yamlbound.Decode("p.yaml", []byte(tc.doc), tc.v, lim, yaml.DisallowUnknownField())
			var be *yamlbound.Error
			if !errors.As(err, &be) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v (%T), want %q...", err, err, tc.want)
			}
			if tc.reason != nil && !errors.Is(err, tc.reason) {
				t.Errorf("%v is not %v", err, tc.reason)
			}
		})
	}
}

// BenchmarkParseMaxSize parses a document of the largest size allowed by
// default, written like a station file's slots.
func BenchmarkParseMaxSize(b *testing.B) {
	var doc strings.Builder
	doc.WriteString("base: &slot {line: l1, method: ums, console: {baud: 115200}}\nslots:\n")
	for i := 0; doc.Len() < yamlbound.DefaultMaxBytes-200; i++ {
		doc.WriteString("  - {<<: *slot, id: s")
		doc.WriteString(strings.Repeat("x", i%7))
		doc.WriteString(", usb-ports: [\"1-1.2\"], console: {port: /dev/ttyUSB0}}\n")
	}
	data := []byte(doc.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := yamlbound.Parse("max.yaml", data, yamlbound.Limits{MaxAliasNodes: 1 << 30}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPosition(t *testing.T) {
	doc := `name: x
base: uc20
stages:
  - name: seeding
    timeout: soon
  - {name: ready, markers: ["(" ]}
  - name:
fail-on:
  - pattern: "["
`
	f, err := yamlbound.Parse("p.yaml", []byte(doc), yamlbound.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	body, err := yamlbound.Body("p.yaml", f)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want string
	}{
		{"", "1:1"},
		{"base", "2:7"},
		{"stages", "4:3"},
		{"stages[0].timeout", "5:14"},
		{"stages[1]", "6:5"},
		{"stages[1].markers[0]", "6:29"},
		{"stages[2].name", "7:5"},   // no value: the key
		{"stages[0].prompt", "4:5"}, // no such key: the parent
		{"stages[9].name", "4:3"},   // no such element: the list
		{"fail-on[0].pattern", "9:14"},
	} {
		l, c := yamlbound.Position(body, tc.path)
		if got := strconv.Itoa(l) + ":" + strconv.Itoa(c); got != tc.want {
			t.Errorf("%q at %s, want %s", tc.path, got, tc.want)
		}
	}
}
