package console_test

import (
	"fmt"
	"time"

	"github.com/flashstation/flashstation/console"
)

// A UC20+ line gives the machine the image's seed label; an install boot
// of another recovery system fails the boot.
func ExampleMachine_ExpectSeedLabel() {
	p, _ := console.Builtin("uc22")
	start := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	m := console.NewMachine(p, start)
	m.ExpectSeedLabel("20260101")
	// U-Boot echoes the arguments it passes: not yet a boot of that system.
	m.Feed(start.Add(time.Second), []byte("append: console=ttyS0 snapd_recovery_mode=install snapd_recovery_system=20260101\r\n"))
	// The kernel prints the command line it was given.
	m.Feed(start.Add(2*time.Second), []byte("[    0.000000] Kernel command line: console=ttyS0 snapd_recovery_mode=install snapd_recovery_system=20210315\r\n"))
	v := m.Verdict()
	fmt.Println(m.SeedLabel())
	fmt.Println(v.Reason)
	fmt.Println(v.Detail)
	// Output:
	// 20210315
	// seed-label-mismatch
	// the board booted recovery system 20210315; the image's seed is 20260101: the board booted another image (stale disk, wrong boot device)
}
