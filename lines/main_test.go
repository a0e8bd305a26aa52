package lines_test

import (
	"os"
	"testing"

	"github.com/flashstation/flashstation/internal/armimage"
	"github.com/flashstation/flashstation/seed"
)

// TestMain lets QEMU run this test binary as a guest connection's
// forwarder (armimage.ForwardMain), and the image identity gate as its
// image reader (seed.ReaderMain).
func TestMain(m *testing.M) {
	armimage.ForwardMain()
	seed.ReaderMain()
	os.Exit(m.Run())
}
