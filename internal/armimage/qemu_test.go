package armimage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/internal/armimage/seedconf"
)

// bootTimeout bounds a whole QEMU run (two boots under TCG).
const bootTimeout = 5 * time.Minute

// qemuAssets are what a QEMU boot needs from the host.
type qemuAssets struct {
	qemu, uboot, kernelDir string
}

// needQEMU skips unless the boot chain is on the host and -short is off.
func needQEMU(t *testing.T) qemuAssets {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU (a minute or more under TCG): skipped with -short")
	}
	needTools(t)
	var a qemuAssets
	var err error
	if a.qemu, err = exec.LookPath("qemu-system-arm"); err != nil {
		t.Skip("qemu-system-arm is missing (Debian package qemu-system-arm; make deps installs it)")
	}
	a.uboot = UBootQEMUArm
	if _, err := os.Stat(a.uboot); err != nil {
		t.Skipf("%s is missing (Debian package u-boot-qemu; make deps installs it)", a.uboot)
	}
	a.kernelDir = os.Getenv("FLASHSTATION_QEMU_KERNEL")
	if a.kernelDir == "" {
		if a.kernelDir, err = KernelAssets(); err != nil {
			t.Skip(err)
		}
	}
	if _, err := os.Stat(filepath.Join(a.kernelDir, ".complete")); err != nil {
		t.Skipf("no armhf kernel assets in %s: run scripts/qemu-kernel.sh (or set FLASHSTATION_QEMU_KERNEL)", a.kernelDir)
	}
	return a
}

// testImage builds (or takes from the build cache) the image with the
// test model and fault, that powers off once ready, and returns a copy the
// boot may change, and the image's bytes.
func testImage(t *testing.T, a qemuAssets, fault string) (string, []byte) {
	t.Helper()
	return bootableImage(t, a, Config{Model: []byte(testModel), Fault: fault, PowerOff: true})
}

// bootableImage builds the image for cfg with this tree's init and a's
// kernel (cached in cfg.CacheDir, by default beside the kernel assets),
// and returns a copy the boot may change, and the image's bytes.
func bootableImage(t *testing.T, a qemuAssets, cfg Config) (string, []byte) {
	t.Helper()
	ctx := context.Background()
	initBin := filepath.Join(t.TempDir(), "init")
	start := time.Now()
	must(t, BuildInit(ctx, "../..", initBin))
	t.Logf("init built in %v", time.Since(start))
	cfg.KernelDir, cfg.Init, cfg.Label = a.kernelDir, initBin, "20240210"
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(filepath.Dir(filepath.Dir(a.kernelDir)), "images")
	}
	start = time.Now()
	img, err := Build(ctx, cfg)
	must(t, err)
	t.Logf("image %s (cached %v) in %v", img.Path, img.Cached, time.Since(start))
	data, err := os.ReadFile(img.Path)
	must(t, err)
	disk := filepath.Join(t.TempDir(), "disk.img")
	must(t, os.WriteFile(disk, data, 0o644))
	return disk, data
}

const testModel = `type: model
authority-id: flashstation
series: 16
brand-id: flashstation
model: qemu-armhf
architecture: armhf
base: core22
grade: signed
timestamp: 2024-02-10T00:00:00Z
sign-key-sha3-384: not-signed-in-this-test

not signed
`

// serialConsole is the board's serial console as the test watches it: a
// pseudo-terminal QEMU's PL011 is connected to.
type serialConsole struct {
	start time.Time

	mu      sync.Mutex
	buf     []byte
	chunks  []console.Chunk // what buf was read as, with the times, for the station's machine
	cursor  int
	changed chan struct{} // closed and replaced on every read
	readErr error         // set when the reader stops
}

// qemuBoard is one QEMU run.
type qemuBoard struct {
	con    *serialConsole
	tty    *os.File      // the pty's master: what is written is typed on the console
	exited chan struct{} // closed when QEMU has exited
	err    error         // QEMU's exit, once exited is closed
}

// bootQEMU starts QEMU on q (its U-Boot and console filled in) with its
// console on a pty; cleanup kills it and waits for it and for the console
// reader.
func bootQEMU(t *testing.T, a qemuAssets, q QEMU) *qemuBoard {
	t.Helper()
	master, slave, err := pty.Open()
	must(t, err)
	q.UBoot, q.Serial = a.uboot, slave.Name()
	args, err := q.Args()
	must(t, err)
	cmd := exec.Command(a.qemu, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b := &qemuBoard{con: &serialConsole{start: time.Now(), changed: make(chan struct{})}, exited: make(chan struct{}), tty: master}
	must(t, cmd.Start())
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		b.con.read(master)
	}()
	go func() {
		b.err = cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-b.exited
		master.Close() // unblocks the reader
		slave.Close()
		<-readerDone
		if stderr.Len() > 0 {
			t.Logf("qemu stderr: %s", stderr.Bytes())
		}
		if t.Failed() {
			t.Logf("console:\n%s", b.con.text())
		}
	})
	return b
}

func (c *serialConsole) read(r io.Reader) {
	p := make([]byte, 4096)
	for {
		n, err := r.Read(p)
		c.mu.Lock()
		c.buf = append(c.buf, p[:n]...)
		if n > 0 {
			c.chunks = append(c.chunks, console.Chunk{At: time.Now(), Data: bytes.Clone(p[:n])})
		}
		if err != nil {
			c.readErr = err
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (c *serialConsole) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

// waitFor waits until needle shows after the previous match and returns
// the time since QEMU started.
func (c *serialConsole) waitFor(ctx context.Context, needle string) (time.Duration, error) {
	for {
		c.mu.Lock()
		if i := bytes.Index(c.buf[c.cursor:], []byte(needle)); i >= 0 {
			c.cursor += i + len(needle)
			c.mu.Unlock()
			return time.Since(c.start), nil
		}
		changed, rerr := c.changed, c.readErr
		c.mu.Unlock()
		if rerr != nil {
			return 0, fmt.Errorf("waiting for %q: console closed: %w", needle, rerr)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for %q: %w", needle, ctx.Err())
		}
	}
}

// expect waits for each marker in turn, logging when it showed.
func (b *qemuBoard) expect(ctx context.Context, t *testing.T, stages [][2]string) {
	t.Helper()
	for _, s := range stages {
		at, err := b.con.waitFor(ctx, s[1])
		if err != nil {
			select {
			case <-b.exited:
				err = fmt.Errorf("%w (qemu exited: %v)", err, b.err)
			default:
			}
			t.Fatalf("stage %s: %v", s[0], err)
		}
		t.Logf("%7.2fs  %-14s %q", at.Seconds(), s[0], s[1])
	}
}

// stationVerdict replays the console, as read and when, into the
// station's boot machine for the uc22 profile; if the boot has not ended
// by the last byte, time runs on for an hour (every stage times out).
func (b *qemuBoard) stationVerdict(t *testing.T) console.Verdict {
	t.Helper()
	p, ok := console.Builtin("uc22")
	if !ok {
		t.Fatal("no uc22 profile")
	}
	m := console.NewMachine(p, b.con.start)
	b.con.mu.Lock()
	chunks := slices.Clone(b.con.chunks)
	b.con.mu.Unlock()
	last := b.con.start
	for _, c := range chunks {
		m.Feed(c.At, c.Data)
		last = c.At
	}
	for at := last; !m.Done() && at.Sub(last) < time.Hour; at = at.Add(10 * time.Second) {
		m.Tick(at)
	}
	v := m.Verdict()
	var stages []string
	for _, s := range v.Stages {
		stages = append(stages, fmt.Sprintf("%s@%.1fs", s.Name, s.At.Seconds()))
	}
	t.Logf("station (uc22): passed=%v reason=%q detail=%q stages=%v", v.Passed, v.Reason, v.Detail, stages)
	return v
}

func TestQEMUBootsInstallThenRun(t *testing.T) {
	t.Parallel() // at most GOMAXPROCS boots at once
	a := needQEMU(t)
	disk, _ := testImage(t, a, seedconf.FaultNone)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	b := bootQEMU(t, a, QEMU{Disk: disk})
	b.expect(ctx, t, [][2]string{
		{"u-boot", "U-Boot 2023.01"},
		{"autoboot", "Hit any key to stop autoboot"},
		{"boot menu", "extlinux/extlinux.conf"},
		{"start kernel", "Starting kernel"},
		{"kernel", "Booting Linux on physical CPU"},
		{"install mode", "snapd_recovery_mode=install"},
		{"init", "Run /init as init process"},
		{"install boot", "Installing the system, please wait for reboot"},
		{"reboot asked", "request immediate system reboot"},
		{"reboot", "reboot: Restarting system"},
		{"u-boot again", "U-Boot 2023.01"},
		{"autoboot", "Hit any key to stop autoboot"},
		{"kernel again", "Booting Linux on physical CPU"},
		{"run mode", "snapd_recovery_mode=run"},
		{"seeded", "Mark system seeded"},
		{"ready", "Press enter to configure."},
		{"power off", "reboot: Power down"},
	})
	select {
	case <-b.exited:
		t.Logf("%7.2fs  qemu exited: %v", time.Since(b.con.start).Seconds(), b.err)
	case <-ctx.Done():
		t.Fatal("qemu did not exit after the board powered off")
	}
	if n := strings.Count(b.con.text(), "Installing the system"); n != 1 {
		t.Errorf("the install boot showed %d times, want once", n)
	}
	if v := b.stationVerdict(t); !v.Passed {
		t.Errorf("the station's uc22 profile fails the boot: %s: %s", v.Reason, v.Detail)
	}
}

func TestQEMUCorruptedKernelFailsInUBoot(t *testing.T) {
	t.Parallel() // at most GOMAXPROCS boots at once
	a := needQEMU(t)
	disk, _ := testImage(t, a, seedconf.FaultNone)
	kernel, err := os.ReadFile(filepath.Join(a.kernelDir, "vmlinuz"))
	must(t, err)
	must(t, ZeroKernel(disk, kernel))

	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	b := bootQEMU(t, a, QEMU{Disk: disk})
	b.expect(ctx, t, [][2]string{
		{"u-boot", "U-Boot 2023.01"},
		{"autoboot", "Hit any key to stop autoboot"},
		{"boot menu", "extlinux/extlinux.conf"},
		{"bad kernel", "zimage: Bad magic!"},
		{"menu failed", "EXTLINUX FAILED: continuing..."},
		{"prompt", "\n=> "}, // every boot target failed: U-Boot's prompt
	})
	if strings.Contains(b.con.text(), "Starting kernel") {
		t.Error("U-Boot started a zeroed kernel")
	}
	// The station fails this boot at once, as U-Boot's: no kernel ran,
	// so no install boot began (U-Boot's "append:" echo is not one).
	v := b.stationVerdict(t)
	if v.Passed || v.Reason != console.ReasonBootloaderError || !strings.Contains(v.Detail, "zimage: Bad magic!") {
		t.Errorf("station verdict on a zeroed kernel: passed=%v %s: %s, want bootloader-error", v.Passed, v.Reason, v.Detail)
	}
	for _, st := range v.Stages {
		if st.Name == "install-boot" && !st.Skipped {
			t.Errorf("install-boot reached with a zeroed kernel: %+v", st)
		}
	}
	t.Logf("console:\n%s", b.con.text())
}

func TestQEMUFaults(t *testing.T) {
	t.Parallel() // at most GOMAXPROCS boots at once
	a := needQEMU(t)
	for _, tc := range []struct {
		fault  string
		reason string // the station's verdict
		stages [][2]string
	}{
		{seedconf.FaultPanic, console.ReasonKernelPanic, [][2]string{
			{"install boot", "Installing the system, please wait for reboot"},
			{"oops", "Unable to handle kernel NULL pointer dereference"},
			{"panic", "Kernel panic - not syncing: Attempted to kill init!"},
			{"panic end", "---[ end Kernel panic - not syncing"},
		}},
		{seedconf.FaultBootLoop, console.ReasonBootLoop, [][2]string{
			{"install boot", "Installing the system, please wait for reboot"},
			{"reboot", "reboot: Restarting system"},
			{"u-boot again", "U-Boot 2023.01"},
			{"install mode again", "snapd_recovery_mode=install"},
			{"install boot again", "Installing the system, please wait for reboot"},
		}},
		{seedconf.FaultSeedError, console.ReasonSeedError, [][2]string{
			{"install boot", "Installing the system, please wait for reboot"},
			{"reboot", "reboot: Restarting system"},
			{"run mode", "snapd_recovery_mode=run"},
			{"seed error", "cannot run snapd from the seed"},
			{"task error", "error: cannot perform the following tasks:"},
		}},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			t.Parallel()
			disk, _ := testImage(t, a, seedconf.FaultNone)
			must(t, SetFault(disk, tc.fault)) // as the bench sets it on a flashed disk
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
			defer cancel()
			b := bootQEMU(t, a, QEMU{Disk: disk})
			b.expect(ctx, t, tc.stages)
			if tc.fault == seedconf.FaultSeedError && strings.Contains(b.con.text(), "Mark system seeded") {
				t.Error("a board that failed to seed says it seeded")
			}
			if v := b.stationVerdict(t); v.Passed || v.Reason != tc.reason {
				t.Errorf("station verdict: passed=%v reason %q, want failed with %q", v.Passed, v.Reason, tc.reason)
			}
		})
	}
}
