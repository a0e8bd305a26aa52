//go:build linux

// Command flashstation-board is the /init of the armhf QEMU bench board's
// initramfs: a static program (CGO_ENABLED=0 GOOS=linux GOARCH=arm
// GOARM=7) that the Debian armmp kernel runs as PID 1 after U-Boot's
// distro boot loaded it from the image's ubuntu-seed partition.
//
// It acts out an Ubuntu Core 20+ first boot on the real console (the
// virt machine's PL011, ttyAMA0): with snapd_recovery_mode=install on the
// kernel command line it prints the install boot, rewrites the boot
// menu's mode to run on the disk (see internal/armimage/seedconf) and
// really reboots, so QEMU resets and U-Boot runs again; with
// snapd_recovery_mode=run it prints the run boot, the seeding and the
// console-ready prompt, then idles, or powers off when
// flashstation.poweroff=1. flashstation.fault=panic|boot-loop|seed-error
// acts out the bench's boot faults.
//
// What makes a board itself comes from its "hardware", not the image: a
// small read-only virtio disk, the EEPROM (package
// internal/armimage/eeprom), holds its serial, device key, device service
// and factory login. With one, the run boot brings up eth0 with the static
// address QEMU's user networking expects (10.0.2.15/24 via 10.0.2.2),
// registers after the seeding as snapd does (the model read from the seed
// vfat, then the serial-request protocol through vaulttest.Device, the
// simulated boards' code, to the device service at the one address QEMU
// forwards to the host), and, when the EEPROM names a factory user, offers
// the console login and prints the serial assertion on request.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flashstation/flashstation/internal/armimage/eeprom"
	"github.com/flashstation/flashstation/internal/armimage/seedconf"
	"github.com/flashstation/flashstation/internal/getty"
)

// diskWait bounds the wait for the virtio disk to appear once its driver
// is loaded.
const diskWait = 20 * time.Second

func main() {
	con := openConsole()
	if err := run(con); err != nil {
		fmt.Fprintf(con, "flashstation-board: %v\n", err)
	}
	// PID 1 must not return (the kernel would panic): a failed board
	// idles, and the watcher's timeouts see it.
	idle()
}

// openConsole returns the console the kernel handed us, reopened if
// stdout is not connected.
func openConsole() *os.File {
	if f, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		return f
	}
	return os.Stdout
}

func run(con *os.File) error {
	if err := mountAll(); err != nil {
		return err
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("reading the kernel command line: %w", err)
	}
	p := parseCmdline(string(cmdline))
	if err := loadModules("/lib/modules"); err != nil {
		return err
	}
	b := newBoot(con, p, time.Now)
	switch p.Mode {
	case seedconf.ModeInstall:
		b.installStart()
		if p.Fault == seedconf.FaultPanic {
			b.panicking()
			con.Sync()
			os.Exit(11) // PID 1 exits: the kernel's own "Attempted to kill init!" panic
		}
		if p.Fault != seedconf.FaultBootLoop {
			d, err := findDisks()
			if err != nil {
				return err
			}
			if err := markInstalled(d.seed); err != nil {
				return err
			}
		}
		b.installEnd()
		unix.Sync()
		return reboot(unix.LINUX_REBOOT_CMD_RESTART)
	case seedconf.ModeRun:
		return runBoot(con, b, p)
	default:
		return fmt.Errorf("no snapd_recovery_mode on the kernel command line (%q)", strings.TrimSpace(string(cmdline)))
	}
}

func reboot(cmd int) error {
	if err := unix.Reboot(cmd); err != nil {
		return fmt.Errorf("reboot(%#x): %w", cmd, err)
	}
	return nil
}

func mountAll() error {
	for _, m := range []struct{ fstype, dir string }{
		{"devtmpfs", "/dev"}, {"proc", "/proc"}, {"sysfs", "/sys"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("mounting %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

// loadModules loads the modules listed in dir/order, in that order.
func loadModules(dir string) error {
	order, err := os.ReadFile(filepath.Join(dir, "order"))
	if err != nil {
		return fmt.Errorf("reading the module order: %w", err)
	}
	for _, name := range strings.Fields(string(order)) {
		if err := loadModule(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("loading module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("loading module %s: %w", path, err)
	}
	return nil
}

// markInstalled rewrites the boot menu's mode to run on the ubuntu-seed
// partition dev.
func markInstalled(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		return fmt.Errorf("marking the install done: %w", err)
	}
	defer f.Close()
	if err := seedconf.Rewrite(f, 16<<20, seedconf.ModeField, seedconf.ModeRun); err != nil {
		return fmt.Errorf("marking the install done on %s: %w", dev, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("marking the install done on %s: %w", dev, err)
	}
	return nil
}

// registrationWait bounds the wait for the registration before a board
// with flashstation.poweroff=1 powers off.
const registrationWait = 2 * time.Minute

// runBoot is the run boot: seeding, then, on a board with an EEPROM, the
// network and the registration, then the console-ready prompt and, on a
// board with a factory user, the getty. It returns only to power off (or
// on a failure).
func runBoot(con *os.File, b *boot, p cmdlineParams) error {
	b.runBoot()
	if p.Fault == seedconf.FaultSeedError {
		b.seedError()
		return nil
	}
	d, err := findDisks()
	if err != nil {
		return err
	}
	var facts *eeprom.Facts
	mac := ""
	if d.eeprom != "" {
		f, err := readFacts(d.eeprom)
		if err != nil {
			return err
		}
		facts = &f
		if mac, err = netUp(slirpNet); err != nil {
			return err
		}
		probe(context.Background(), b.print, f.Probes)
	}
	b.seeding()

	// snapd's "Initialize device", after the seeding; the console shows
	// nothing of it. Its goroutine is owned here: a board that powers off
	// waits for it, an idle one keeps it running as PID 1 never ends.
	snap := &snapState{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	if facts != nil {
		model, err := readModel(d.seed, p.System)
		if err != nil {
			snap.finish(nil, err)
			b.print("flashstation-board: " + err.Error() + "\n")
		} else {
			wg.Add(1)
			go func() {
				defer wg.Done()
				snap.finish(register(ctx, *facts, model, mac))
			}()
		}
	}
	login := facts != nil && facts.ConsoleUser != ""
	if login {
		if err := rawTerminal(int(con.Fd())); err != nil {
			return err
		}
	}
	b.ready(login, slirpNet.addr.Addr().String())
	if p.PowerOff {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		t := time.NewTimer(registrationWait)
		select {
		case <-done:
		case <-t.C:
			cancel()
			<-done
		}
		t.Stop()
		unix.Sync()
		return reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	if login {
		g := &getty.Getty{User: facts.ConsoleUser, Password: facts.ConsolePassword, Kernel: kernelRelease(), Snap: snap.registration,
			Out: func(s string) { io.WriteString(con, s) }}
		err := g.Serve(con)
		cancel()
		wg.Wait()
		return err
	}
	wg.Wait()
	return nil
}

func idle() {
	for {
		time.Sleep(time.Hour)
	}
}

// cmdlineParams is what the kernel command line tells the board.
type cmdlineParams struct {
	Mode     string // snapd_recovery_mode
	System   string // snapd_recovery_system
	Fault    string // flashstation.fault
	PowerOff bool   // flashstation.poweroff=1
}

func parseCmdline(s string) cmdlineParams {
	p := cmdlineParams{Fault: seedconf.FaultNone}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case seedconf.ModeField:
			p.Mode = v
		case "snapd_recovery_system":
			p.System = v
		case seedconf.FaultField:
			p.Fault = v
		case "flashstation.poweroff":
			p.PowerOff = v == "1"
		}
	}
	return p
}
