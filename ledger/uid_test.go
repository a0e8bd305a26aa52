package ledger_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/flashstation/flashstation/ledger"
)

func TestNewUID(t *testing.T) {
	form := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	at := time.Date(2026, 12, 2, 1, 2, 3, 456_000_000, time.UTC)
	seen := map[string]bool{}
	for range 10000 {
		u := ledger.NewUID(at)
		if !form.MatchString(u) {
			t.Fatalf("%q is not a UUIDv7", u)
		}
		if seen[u] {
			t.Fatalf("%q made twice", u)
		}
		seen[u] = true
		if got, ok := ledger.UIDTime(u); !ok || !got.Equal(at) {
			t.Fatalf("UIDTime(%q) = %v, %v; want %v", u, got, ok, at)
		}
	}
	// Later rows sort after earlier ones.
	if a, b := ledger.NewUID(at), ledger.NewUID(at.Add(time.Millisecond)); a >= b {
		t.Errorf("%s (at %v) does not sort before %s (1 ms later)", a, at, b)
	}
	if _, ok := ledger.UIDTime("not-a-uid"); ok {
		t.Error("UIDTime accepted garbage")
	}
}
