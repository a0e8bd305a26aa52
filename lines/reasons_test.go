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
