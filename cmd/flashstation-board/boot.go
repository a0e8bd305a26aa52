//go:build linux

package main

import (
	"fmt"
	"io"
	"time"

	"github.com/flashstation/flashstation/internal/getty"
)

// boot prints a first boot's console lines, shaped as Ubuntu Core 22's
// (systemd status lines, snapd's journal lines on the console).
type boot struct {
	w   io.Writer
	p   cmdlineParams
	now func() time.Time
}

func newBoot(w io.Writer, p cmdlineParams, now func() time.Time) *boot {
	return &boot{w: w, p: p, now: now}
}

// ok is a systemd status line.
func ok(what string) string { return "[\x1b[0;32m  OK  \x1b[0m] " + what + "\n" }

func (b *boot) print(s string) { io.WriteString(b.w, s) }

// snapd is one of snapd's journal lines.
func (b *boot) snapd(format string, args ...any) {
	b.print(b.now().Format("Jan 02 15:04:05") + " ubuntu snapd[598]: " + fmt.Sprintf(format, args...) + "\n")
}

func (b *boot) systemdStart() {
	b.print("\nWelcome to Ubuntu Core 22!\n\n")
	b.print(ok("Created slice system-serial\\x2dgetty.slice."))
	b.print(ok("Reached target Local File Systems (Pre)."))
	b.print(ok("Started Journal Service."))
	b.print(ok("Reached target Network."))
	b.print("         Starting Start the snapd services from the snapd snap...\n")
}

func (b *boot) installStart() {
	b.systemdStart()
	b.print(ok("Started Ubuntu Core Firstboot Configuration ttyAMA0."))
	b.print("Installing the system, please wait for reboot\n")
	b.snapd("daemon.go:343: started snapd/2.61.1 (series 16) ubuntu-core/22 (armhf); recovery system %s", b.p.System)
	b.snapd("handlers_install.go:204: create and deploy partitions")
}

// panicking is what comes before the kernel's panic in the panic fault.
func (b *boot) panicking() {
	b.print("Unable to handle kernel NULL pointer dereference at virtual address 00000000\n")
}

func (b *boot) installEnd() {
	for i, part := range []string{"ubuntu-boot", "ubuntu-save", "ubuntu-data"} {
		b.snapd("install.go:216: created new partition /dev/vda%d for structure #%d (%q) with role system-%s", i+2, i+2, part, part[len("ubuntu-"):])
	}
	b.snapd("handlers_install.go:251: make system runnable")
	b.snapd("handlers_install.go:321: request immediate system reboot")
	b.print(ok("Stopped target Network."))
	b.print(ok("Reached target Shutdown."))
	b.print("         Starting Reboot...\n")
}

func (b *boot) runBoot() {
	b.systemdStart()
	b.snapd("daemon.go:343: started snapd/2.61.1 (series 16) ubuntu-core/22 (armhf)")
}

var seedSnaps = []struct {
	name string
	rev  int
}{{"snapd", 20671}, {"core22", 1125}, {"pi-kernel", 1606}, {"pi", 132}}

func (b *boot) seeding() {
	for _, s := range seedSnaps {
		b.print(fmt.Sprintf("Ensure prerequisites for %q are available\n", s.name))
		b.print(fmt.Sprintf("Mount snap %q (%d)\n", s.name, s.rev))
		b.print(fmt.Sprintf("Setup snap %q (%d) security profiles\n", s.name, s.rev))
	}
	b.print("Mark system seeded\n")
	b.print(ok("Started Wait until snapd is fully seeded."))
	b.print(ok("Reached target Multi-User System."))
}

func (b *boot) seedError() {
	b.print(fmt.Sprintf("Mount snap %q (%d)\n", seedSnaps[1].name, seedSnaps[1].rev))
	b.snapd("daemon.go:255: cannot run snapd from the seed: cannot mount snap \"core22\": squashfs: invalid superblock")
	b.print("error: cannot perform the following tasks:\n")
	b.print(fmt.Sprintf("- Mount snap %q (%d) (squashfs: invalid superblock)\n", seedSnaps[1].name, seedSnaps[1].rev))
}

// ready is the console-ready text: console-conf's prompt, or on a board
// with a factory user the getty's banner and login prompt (written raw:
// the terminal no longer turns "\n" into "\r\n" by then).
func (b *boot) ready(login bool, ip string) {
	if login {
		b.print(getty.Banner(ip, "ttyAMA0"))
		return
	}
	b.print("Press enter to configure.\n")
}
