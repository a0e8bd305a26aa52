package lines_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/lines"
)

// readmeRules are the rules README.md says config check enforces, each
// with the file in testdata/rules that breaks it (and nothing else). The
// phrase is the README's own words.
var readmeRules = []struct {
	phrase  string
	file    string
	warning bool // listed among the warnings, which do not fail the check
}{
	{phrase: "unknown keys (with a suggestion for typos)", file: "unknown-key.yaml"},
	{phrase: "wrong types", file: "wrong-type.yaml"},
	{phrase: "duplicate keys", file: "duplicate-key.yaml"},
	{phrase: "a slot naming a missing line", file: "missing-line.yaml"},
	{phrase: "duplicate slot ids", file: "duplicate-slot-id.yaml"},
	{phrase: "USB ports", file: "duplicate-usb-port.yaml"},         // duplicate ...
	{phrase: "console ports", file: "duplicate-console-port.yaml"}, // duplicate ...
	{phrase: "hub ports", file: "duplicate-hub-port.yaml"},         // duplicate ...
	{phrase: "proxy ports", file: "duplicate-proxy-port.yaml"},     // duplicate ...
	{phrase: "a metrics address on a proxy's port", file: "metrics-on-proxy-port.yaml"},
	{phrase: "missing files", file: "missing-file.yaml"},
	{phrase: "a fastboot trigger on a UMS slot", file: "fastboot-trigger-ums-slot.yaml"},
	{phrase: "a non-standard baud rate", file: "baud-rate.yaml"},
	{phrase: "a hub port that does not feed the slot", file: "hub-port-not-feeding.yaml"},
	{phrase: "a proxy open beyond loopback without allow", file: "proxy-without-allow.yaml"},
	{phrase: "an expected serial that cannot be a strict serial", file: "expected-serial.yaml"},
	{phrase: "an unset environment variable", file: "unset-env.yaml", warning: true},
	{phrase: "a line no slot serves", file: "unserved-line.yaml", warning: true},
}

// readmeCheckRules returns the errors part and the warnings part of the
// README paragraph on what config check reports, whitespace collapsed.
func readmeCheckRules(t *testing.T) (errs, warns string) {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(b)), " ")
	const start, warnStart, end = "`config check` reports every problem at once, each as `FILE:LINE:COLUMN: FIELD: MESSAGE`:",
		". Warnings (", ") are printed but do not fail the check."
	i := strings.Index(text, start)
	j := strings.Index(text, warnStart)
	k := strings.Index(text, end)
	if i < 0 || j < i || k < j {
		t.Fatalf("README.md no longer has the paragraph %q ... %q ... %q: update this test with it", start, warnStart, end)
	}
	return text[i+len(start) : j], text[j+len(warnStart) : k]
}

// TestReadmeRulesAreListed: every rule of the table is in the README and
// the README lists no rule the table lacks (once the table's phrases are
// taken out, only joining words are left).
func TestReadmeRulesAreListed(t *testing.T) {
	errs, warns := readmeCheckRules(t)
	for _, r := range readmeRules {
		part := &errs
		if r.warning {
			part = &warns
		}
		if !strings.Contains(*part, r.phrase) {
			t.Errorf("README does not list %q among the %s", r.phrase, map[bool]string{false: "errors", true: "warnings"}[r.warning])
		}
		*part = strings.Replace(*part, r.phrase, "", 1)
	}
	filler := map[string]bool{"and": true, "or": true, "duplicate": true, "impossible": true, "values": true}
	for _, rest := range []string{errs, warns} {
		for _, w := range strings.FieldsFunc(rest, func(r rune) bool { return strings.ContainsRune(" ,().", r) }) {
			if !filler[w] {
				t.Errorf("README lists a config check rule this test does not know (%q in %q): add a case to readmeRules", w, rest)
			}
		}
	}
}

var wantComment = regexp.MustCompile(`# want (error|warning): (\S+): (.*)$`)

// TestReadmeRules loads each rule's file: config check reports the rule at
// the line marked "# want error: PATH: MESSAGE" (or warning), as an error
// (a warning for the warnings), and nothing else is wrong with the file.
func TestReadmeRules(t *testing.T) {
	root, _ := filepath.Abs("..")
	files := []string{"valid.yaml"}
	for _, r := range readmeRules {
		files = append(files, r.file)
	}
	for i, name := range files {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "rules", name)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			type want struct {
				line          int
				warning       bool
				path, message string
			}
			var wants []want
			sc := bufio.NewScanner(f)
			for n := 1; sc.Scan(); n++ {
				if m := wantComment.FindStringSubmatch(sc.Text()); m != nil {
					wants = append(wants, want{n, m[1] == "warning", m[2], strings.ReplaceAll(m[3], "$ROOT", root)})
				}
			}
			if i > 0 && len(wants) != 1 {
				t.Fatalf("%s marks %d lines with # want, want 1", path, len(wants))
			}
			if i > 0 && wants[0].warning != readmeRules[i-1].warning {
				t.Fatalf("%s: README lists %q as warning=%v", path, readmeRules[i-1].phrase, readmeRules[i-1].warning)
			}
			_, problems, err := lines.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range wants {
				found := false
				for _, p := range problems {
					if p.Path == w.path && strings.HasPrefix(p.Msg, w.message) && p.Warning == w.warning &&
						p.File == path && p.Pos.Line == w.line && p.Pos.Col >= 1 {
						found = true
					}
				}
				if !found {
					t.Errorf("config check does not report %s:%d: %s: %s (warning %v); it reports:\n%v", path, w.line, w.path, w.message, w.warning, problems)
				}
			}
			if len(problems) != len(wants) {
				t.Errorf("want only the marked problem, got:\n%v", problems)
			}
		})
	}
}
