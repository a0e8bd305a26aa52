// Command flashstation runs a factory flashing bench for Ubuntu Core
// devices: it flashes boards in parallel, watches their first boot and
// records the serial assertion each one receives. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/flashstation/flashstation/internal/armimage"
	"github.com/flashstation/flashstation/seed"
)

func main() {
	// A QEMU board's connection to the station, when QEMU started this
	// binary to relay one (demo --qemu): relays it and exits.
	armimage.ForwardMain()
	// A child that reads one image's seed under bounds, for the image
	// identity gate (seed.ReadIsolated): reads it and exits.
	seed.ReaderMain()
	// A hang-up (the terminal or ssh session gone) stops as SIGTERM does.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	// The first signal stops the station cleanly (it may wait for boards
	// that are registering); the second one ends the process at once.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err))
}
