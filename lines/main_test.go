package lines_test

import (
	"os"
	"testing"

	"github.com/flashstation/flashstation/internal/armimage"
)

// TestMain lets QEMU run this test binary as a guest connection's
// forwarder (armimage.ForwardMain). The gate reads the benches' images in
// this process (no seed.ReaderMain): a child per pipeline costs a second
// or two under -race, and its bounds are tested in seed and cmd.
func TestMain(m *testing.M) {
	armimage.ForwardMain()
	os.Exit(m.Run())
}
