package sim_test

import (
	"os"
	"testing"

	"github.com/flashstation/flashstation/internal/armimage"
)

// TestMain lets QEMU run this test binary as a guest connection's
// forwarder (armimage.ForwardMain).
func TestMain(m *testing.M) {
	armimage.ForwardMain()
	os.Exit(m.Run())
}
