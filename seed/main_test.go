package seed_test

import (
	"os"
	"testing"

	"github.com/flashstation/flashstation/seed"
)

// TestMain lets seed.ReadIsolated run this test binary as its reader.
func TestMain(m *testing.M) {
	seed.ReaderMain()
	os.Exit(m.Run())
}
