package serialvault_test

import (
	"strings"
	"testing"

	"github.com/flashstation/flashstation/serialvault"
)

// TestProposedSerialBody: the serial comes from the body when the header
// has none, and a body any device can send (an alias bomb, a deep nesting)
// proposes nothing instead of exhausting the station.
func TestProposedSerialBody(t *testing.T) {
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
		"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n" +
		"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n" +
		"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nserial: A-1\nall: *g\n"
	for _, tc := range []struct{ name, body, want string }{
		{"serial in the body", "serial: A-1\nextra: {x: 1}\n", "A-1"},
		{"no serial", "other: x\n", ""},
		{"alias bomb", bomb, ""},
		{"deep nesting", "serial: A-1\nx: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := serialvault.NewSerialRequest(testKey(t), "acme", "acme-gw-armhf", "REQ-1", "", []byte(tc.body), fixedNow)
			if err != nil {
				t.Fatal(err)
			}
			req, err := serialvault.AsSerialRequest(a)
			if err != nil {
				t.Fatal(err)
			}
			if got := serialvault.ProposedSerial(req); got != tc.want {
				t.Errorf("proposed %q, want %q", got, tc.want)
			}
		})
	}
}
