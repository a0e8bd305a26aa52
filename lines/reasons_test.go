package lines_test

import (
	"os"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/lines"
)

// TestReasonTableInReadme keeps the README's failure reason table in step
// with the code.
func TestReasonTableInReadme(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range lines.Reasons {
		if seen[r.Code] {
			t.Errorf("reason %s listed twice", r.Code)
		}
		seen[r.Code] = true
		if r.Do == "" || len([]rune(r.Do)) > 20 {
			t.Errorf("reason %s: short advice %q must be 1 to 20 characters (a card's line)", r.Code, r.Do)
		}
		switch r.Class {
		case lines.ClassFail, lines.ClassError, lines.ClassAborted:
		default:
			t.Errorf("reason %s: class %q", r.Code, r.Class)
		}
		if !strings.Contains(string(readme), "| `"+r.Code+"` | "+r.Class+" | "+r.What+" | "+r.Advice+" |") {
			t.Errorf("README lacks the row of %s", r.Code)
		}
	}
	if r := lines.ReasonFor("emmc-timeout"); r.Code != "emmc-timeout" || r.Advice == "" {
		t.Errorf("a profile's own reason: %+v", r)
	}
}

// TestMigrationClasses: the ledger's version-2 migration turns version 1's
// failures into errors by reason code; each code it names is an error
// (or, for the stops, aborted) in the reason table.
func TestMigrationClasses(t *testing.T) {
	sql, err := os.ReadFile("../ledger/migrations/0002_outcomes.sql")
	if err != nil {
		t.Fatal(err)
	}
	list := func(after string) []string {
		i := strings.Index(string(sql), after)
		if i < 0 {
			t.Fatalf("no %q in the migration", after)
		}
		rest := string(sql)[i+len(after):]
		rest = rest[:strings.Index(rest, ")")]
		var codes []string
		for _, f := range strings.Split(rest, ",") {
			codes = append(codes, strings.Trim(strings.TrimSpace(f), "'"))
		}
		return codes
	}
	for _, c := range list("state = 'fail' AND reason IN (") {
		if r := lines.ReasonFor(c); r.Class != lines.ClassAborted {
			t.Errorf("the migration aborts %s; the table says %s", c, r.Class)
		}
	}
	errs := list("THEN 'aborted'\n\t\tWHEN state = 'fail' AND reason IN (")
	if len(errs) < 10 {
		t.Fatalf("error codes of the migration: %v", errs)
	}
	for _, c := range errs {
		if r := lines.ReasonFor(c); r.Class != lines.ClassError {
			t.Errorf("the migration makes %s an error; the table says %s", c, r.Class)
		}
	}
}

// TestNoFailSaysPass walks every reason code, on every attempt, with the
// default trays and a line's own: a board that did not pass is never sent
// to the pass tray, and each instruction says a reject tray, a retry or
// what to fix.
func TestNoFailSaysPass(t *testing.T) {
	for _, trays := range []lines.Trays{{}, {Pass: "GOOD bin", Reject: "SCRAP bin"}} {
		pass := lines.Instruction(true, "", 1, trays)
		wantPass, wantReject := trays.Pass, trays.Reject
		if wantPass == "" {
			wantPass, wantReject = lines.DefaultPassTray, lines.DefaultRejectTray
		}
		if pass != "→ "+wantPass {
			t.Errorf("pass with %+v: %q", trays, pass)
		}
		for _, r := range append(lines.Reasons, lines.ReasonFor("custom-profile-pattern")) {
			for attempt := 1; attempt <= 3; attempt++ {
				got := lines.Instruction(false, r.Code, attempt, trays)
				if got == pass || strings.Contains(got, wantPass) || strings.Contains(got, "remove board") {
					t.Errorf("%s attempt %d: %q sends a failed board the way of a passed one", r.Code, attempt, got)
				}
				then := r.Then(attempt)
				switch {
				case then == lines.ThenReject && got != "→ "+wantReject:
					t.Errorf("%s: reject instruction %q", r.Code, got)
				case then == lines.ThenRetry && got != "→ retry (r)" && got != "→ next batch", then == lines.ThenFix && !strings.HasPrefix(got, "→ fix: "):
					t.Errorf("%s attempt %d (%s): %q", r.Code, attempt, then, got)
				}
				if r.Class == lines.ClassFail && attempt >= 2 && then != lines.ThenReject {
					t.Errorf("%s: a board fault on its second try is %s, want reject", r.Code, then)
				}
			}
		}
	}
	if got := lines.Instruction(false, lines.ReasonIdentityMismatch, 1, lines.Trays{}); got != "→ "+lines.DefaultRejectTray {
		t.Errorf("identity mismatch: %q", got)
	}
}

// TestImageCausesInReadme keeps the README's table of the image identity
// gate's causes in step with what the bench shows.
func TestImageCausesInReadme(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range lines.ImageCauses {
		if c.Words == "" || len([]rune(c.Words)) > 20 {
			t.Errorf("cause %s: card words %q must be 1 to 20 characters", c.Code, c.Words)
		}
		if !strings.Contains(string(readme), "| `"+c.Code+"` | "+c.Words+" | "+c.Do+" |") {
			t.Errorf("README lacks the row of %s", c.Code)
		}
	}
}
