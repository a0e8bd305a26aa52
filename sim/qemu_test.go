package sim_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/internal/armimage"
	"github.com/flashstation/flashstation/internal/armimage/seedconf"
	"github.com/flashstation/flashstation/sim"
	"github.com/flashstation/flashstation/usb/usbtest"
)

// qemuAssets finds the QEMU bench's assets or skips, saying what is
// missing.
func qemuAssets(t *testing.T) sim.QEMUAssets {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU boots take seconds each: not with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, err := sim.FindQEMUAssets(ctx, "..")
	if err != nil {
		t.Skipf("no QEMU bench here: %v", err)
	}
	return a
}

// TestQEMUBoard: a QEMU board takes the image in its flash mode like any
// UMS board, then boots it for real when powered on (Debian's U-Boot,
// Debian's kernel, our init), the station's own watcher passing the boot
// on its console with U-Boot's and the kernel's lines in the transcript;
// it shows on the bus as booted at the ready prompt, leaves it when
// powered off (QEMU ends), and boots again when powered on.
func TestQEMUBoard(t *testing.T) {
	a := qemuAssets(t)
	k := newKit(t)
	ctx := context.Background()
	img, err := armimage.Build(ctx, armimage.Config{KernelDir: a.KernelDir, Init: a.Init, Model: k.model.Encode(), Label: "20260901", CacheDir: a.CacheDir})
	if err != nil {
		t.Fatal(err)
	}
	c, err := flash.NewCache(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	prep, err := c.Prepare(ctx, flash.ImageSpec{Path: img.Path, Bmap: img.Bmap}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bus := &usbtest.Bus{}
	b, err := sim.NewBoard(sim.BoardConfig{
		Serial: "QEMU0001", Mode: sim.ModeUMS, Storage: filepath.Join(t.TempDir(), "emmc.img"), DiskSize: armimage.DiskSize + 8<<20,
		Port: "1-1.2", Presence: bus, Model: k.model, QEMU: &a,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	target, err := b.Target()
	if err != nil {
		t.Fatal(err)
	}
	if r := flash.Write(ctx, prep, target, flash.Options{Verify: true}); r.Failure != nil || !r.Verified {
		t.Fatalf("flash: %+v", r)
	}
	target.Close()
	con, err := console.OpenConsole(ctx, &console.Capture{Path: b.ConsolePath(), Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	p, _ := console.Builtin("uc22")
	var lines []string
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	b.PowerOff()
	if devs, _ := bus.Devices(); len(devs) != 0 {
		t.Fatalf("powered off, the board shows as %+v", devs)
	}
	start := time.Now()
	b.PowerOn()
	v := con.WatchBoot(wctx, p, start, func(e console.Event) {
		if e.Kind == console.EventLine {
			lines = append(lines, e.Line)
		}
	})
	transcript := strings.Join(lines, "\n")
	if !v.Passed {
		t.Fatalf("the station's watcher fails the QEMU boot: %s: %s\n%s", v.Reason, v.Detail, transcript)
	}
	for _, want := range []string{"U-Boot 2023.01", "Hit any key to stop autoboot", "Booting Linux on physical CPU", "snapd_recovery_mode=install", "snapd_recovery_mode=run"} {
		if !strings.Contains(transcript, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	var stages []string
	for _, s := range v.Stages {
		stages = append(stages, s.Name+"@"+s.At.Round(100*time.Millisecond).String())
	}
	t.Logf("QEMU board booted in %s: %s", time.Since(start).Round(100*time.Millisecond), strings.Join(stages, " "))
	if err := b.WaitBooted(wctx); err != nil {
		t.Fatal(err)
	}
	if devs, _ := bus.Devices(); len(devs) != 1 || devs[0].Kind != "booted" {
		t.Errorf("booted, the board shows as %+v", devs)
	}
	b.PowerOff()
	if devs, _ := bus.Devices(); len(devs) != 0 || b.State() != sim.StateOff {
		t.Errorf("powered off: state %s, devices %+v", b.State(), devs)
	}
}

// TestQEMUFaultFlag: each boot fault of a simulated board has the guest's
// own fault, set on the flashed disk's boot menu (the guest's faults
// themselves are proved in armimage's TestQEMUFaults); faults the guest
// cannot act out boot normally.
func TestQEMUFaultFlag(t *testing.T) {
	for _, tc := range []struct {
		f    sim.Faults
		want string
	}{
		{sim.Faults{}, seedconf.FaultNone},
		{sim.Faults{KernelPanic: true}, seedconf.FaultPanic},
		{sim.Faults{BootLoop: true}, seedconf.FaultBootLoop},
		{sim.Faults{SeedError: true}, seedconf.FaultSeedError},
		{sim.Faults{CorruptAfterFlash: true}, seedconf.FaultNone},
	} {
		if got := sim.QEMUFault(tc.f); got != tc.want {
			t.Errorf("%v: guest fault %q, want %q", tc.f, got, tc.want)
		}
	}
}
