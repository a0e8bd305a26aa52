package console_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/console"
)

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func composite(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/uc20-first-boot-composite.txt")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func profile(t testing.TB, name string) *console.Profile {
	t.Helper()
	p, err := console.LoadProfile(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// feedLines feeds data line by line, a second apart, then ticks at the
// end time; it returns the machine and all events.
func feed(t testing.TB, p *console.Profile, data []byte, step time.Duration) (*console.Machine, []console.Event) {
	t.Helper()
	m := console.NewMachine(p, t0)
	var evs []console.Event
	now := t0
	for _, chunk := range bytes.SplitAfter(data, []byte("\n")) {
		now = now.Add(step)
		evs = append(evs, m.Feed(now, chunk)...)
		evs = append(evs, m.Tick(now)...)
		if m.Done() {
			break
		}
	}
	return m, evs
}

func stageNames(v console.Verdict) string {
	var out []string
	for _, s := range v.Stages {
		n := s.Name
		if s.Skipped {
			n += "(skipped)"
		}
		out = append(out, n)
	}
	return strings.Join(out, " ")
}

func TestCompositePasses(t *testing.T) {
	m, evs := feed(t, profile(t, "uc20"), composite(t), 100*time.Millisecond)
	v := m.Verdict()
	if !m.Done() || !v.Passed {
		t.Fatalf("verdict %+v", v)
	}
	if got := stageNames(v); got != "first-bytes bootloader install-boot run-boot seeding console-ready" {
		t.Errorf("stages %s", got)
	}
	if evs[len(evs)-1].Kind != console.EventReady {
		t.Errorf("last event %+v", evs[len(evs)-1])
	}
	lines := 0
	for _, e := range evs {
		if e.Kind == console.EventLine {
			lines++
			if strings.ContainsAny(e.Line, "\r\x1b") {
				t.Errorf("line not cleaned: %q", e.Line)
			}
		}
	}
	if lines < 150 {
		t.Errorf("%d lines", lines)
	}
}

// variants of the composite: each a boot that must fail, or pass, as the
// spec says.
func TestBootVariants(t *testing.T) {
	comp := string(composite(t))
	cut := func(at string) string {
		i := strings.Index(comp, at)
		if i < 0 {
			t.Fatalf("composite lacks %q", at)
		}
		return comp[:i]
	}
	panicTrace := "[   30.100000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(179,2)\r\n" +
		"[   30.100100] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 5.4.0-1028-raspi #31-Ubuntu\r\n" +
		"[   30.100200] Hardware name: BCM2835\r\n" +
		"[   30.100300] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(179,2) ]---\r\n" +
		"this line comes after the panic\r\n"
	uboot := comp[:strings.Index(comp, "Starting kernel")]
	for _, tc := range []struct {
		name, input, reason, detail string
		profile                     string
	}{
		{"kernel panic", cut("[    1.489362]") + panicTrace, console.ReasonKernelPanic, "end Kernel panic", "uc20"},
		{"boot loop (second install)", cut("Press enter") + "Installing the system, please wait for reboot\r\n", console.ReasonBootLoop, "install boot started again", "uc20"},
		{"boot loop (third bootloader)", cut("Press enter") + uboot, console.ReasonBootLoop, "bootloader started 3 times", "uc20"},
		{"seed error", cut("Press enter") + "error: cannot perform the following tasks:\r\n- Mount snap \"pi\" (2)\r\n", console.ReasonSeedError, "cannot perform", "uc20"},
		{"bootloader error", cut("Hit any key") + "Wrong Image Format for boot\r\nResetting CPU ...\r\n", console.ReasonBootloaderError, "Wrong Image Format", "uc20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := feed(t, profile(t, tc.profile), []byte(tc.input), 10*time.Millisecond)
			v := m.Verdict()
			if !m.Done() || v.Passed || v.Reason != tc.reason || !strings.Contains(v.Detail, tc.detail) {
				t.Errorf("verdict %s: %q (want %s with %q)", v.Reason, v.Detail, tc.reason, tc.detail)
			}
			if len(v.LastLines) == 0 {
				t.Error("no last lines for QA")
			}
		})
	}
}

func TestKernelPanicWithoutEnd(t *testing.T) {
	m := console.NewMachine(profile(t, "uc20"), t0)
	m.Feed(t0.Add(time.Second), []byte("[ 1.0] Kernel panic - not syncing: Attempted to kill init!\r\n[ 1.1] CPU: 0\r\n"))
	if m.Done() {
		t.Fatal("failed before the trace ended")
	}
	m.Tick(t0.Add(12 * time.Second))
	if v := m.Verdict(); v.Reason != console.ReasonKernelPanic || !strings.Contains(v.Detail, "CPU: 0") {
		t.Errorf("%+v", v)
	}
}

func TestSeedingMayBeSilent(t *testing.T) {
	comp := string(composite(t))
	hang := comp[:strings.Index(comp, "Mount snap")]
	p := profile(t, "uc20")
	m, _ := feed(t, p, []byte(hang), 10*time.Millisecond)
	if m.Done() {
		t.Fatalf("failed early: %+v", m.Verdict())
	}
	last := t0.Add(10 * time.Millisecond * time.Duration(strings.Count(hang, "\n")+1))
	// Twenty minutes of silence in seeding are allowed...
	if m.Tick(last.Add(19 * time.Minute)); m.Done() {
		t.Fatalf("silence during seeding failed the boot: %+v", m.Verdict())
	}
	// ... but not more.
	m.Tick(last.Add(20*time.Minute + time.Second))
	if v := m.Verdict(); v.Reason != console.ReasonStageTimeout || !strings.Contains(v.Detail, "seeding not reached within 20m") {
		t.Errorf("%+v", v)
	}
}

func TestGarbageOnly(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	noise := make([]byte, 2048)
	for i := range noise {
		noise[i] = byte(rng.IntN(256)) | 0x80
	}
	m, _ := feed(t, profile(t, "uc20"), noise, time.Millisecond)
	if v := m.Verdict(); v.Reason != console.ReasonBaudMismatch || !strings.Contains(v.Detail, "baud mismatch or line noise") {
		t.Errorf("%+v", v)
	}
}

func TestQuietBootAndPromptWithoutNewline(t *testing.T) {
	quiet := "\r\nInstalling the system, please wait for reboot\r\n" +
		"\r\n\r\nUbuntu Core 22 on 10.0.0.23 (ttyS0)\r\n\r\nubuntu login: "
	m, _ := feed(t, profile(t, "uc22"), []byte(quiet), time.Second)
	v := m.Verdict()
	if !v.Passed {
		t.Fatalf("quiet boot: %+v", v)
	}
	if got := stageNames(v); got != "first-bytes bootloader(skipped) install-boot run-boot(skipped) seeding(skipped) console-ready" {
		t.Errorf("stages %s", got)
	}
	// Only a prompt, no newline at all.
	m = console.NewMachine(profile(t, "uc16"), t0)
	m.Feed(t0.Add(time.Second), []byte("Welcome to Ubuntu Core 18!\r\nMark system seeded\r\nubuntu login: "))
	if !m.Verdict().Passed {
		t.Errorf("prompt without newline: %+v", m.Verdict())
	}
}

func TestNoOutputAndOptionalStageTimeout(t *testing.T) {
	m := console.NewMachine(profile(t, "uc20"), t0)
	if d := m.Deadline(); !d.Equal(t0.Add(30 * time.Second)) {
		t.Errorf("first deadline %v", d)
	}
	m.Tick(t0.Add(29 * time.Second))
	if m.Done() {
		t.Fatal("failed before 30 s")
	}
	m.Tick(t0.Add(31 * time.Second))
	if v := m.Verdict(); v.Reason != console.ReasonNoOutput || !strings.Contains(v.Detail, "check the console cable") {
		t.Errorf("%+v", v)
	}
	// The optional bootloader stage is skipped when it does not come.
	m = console.NewMachine(profile(t, "uc20"), t0)
	m.Feed(t0.Add(time.Second), []byte("[    0.000000] Booting Linux on physical CPU 0x0\r\n"))
	m.Tick(t0.Add(62 * time.Second))
	if m.Done() || m.Current() != "install-boot" {
		t.Errorf("after the bootloader timeout: done %v, waiting for %s", m.Done(), m.Current())
	}
}

func TestInstalledSystemIsNotAFirstBoot(t *testing.T) {
	// A board that boots straight to a login prompt never installed: the
	// install stage must be seen.
	m := console.NewMachine(profile(t, "uc20"), t0)
	m.Feed(t0.Add(time.Second), []byte("Ubuntu Core 20 on 10.0.0.2 (ttyS0)\r\n\r\nubuntu login: "))
	if m.Done() {
		t.Fatalf("passed without an install boot: %+v", m.Verdict())
	}
	m.Tick(t0.Add(20 * time.Minute))
	if v := m.Verdict(); v.Reason != console.ReasonStageTimeout || !strings.Contains(v.Detail, "no install boot seen") {
		t.Errorf("%+v", v)
	}
}

func TestLongSpinnerLine(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("Installing the system, please wait for reboot\r\n")
	for b.Len() < 200_000 {
		b.WriteString("\rSeeding snaps " + strings.Repeat(" ", 60) + "/")
	}
	b.WriteString(strings.Repeat("x", 10_000)) // a run with no line end at all
	b.WriteString("\r\nMark system seeded\r\nPress enter to configure.\r\n")
	m, evs := feed(t, profile(t, "uc20"), b.Bytes(), time.Millisecond)
	if !m.Verdict().Passed {
		t.Fatalf("%+v", m.Verdict())
	}
	for _, e := range evs {
		if len(e.Line) > console.MaxLine {
			t.Fatalf("line of %d bytes", len(e.Line))
		}
	}
}

// TestArmhfUBootCannotBootTheKernel: 32-bit U-Boot (Debian's 2023.01, as
// the QEMU armhf board prints it) finding a corrupt kernel on a flashed
// board is a bootloader error at once, and its echo of the command line
// it would pass ("append: ... snapd_recovery_mode=install") is not taken
// for the install boot: no kernel ran.
func TestArmhfUBootCannotBootTheKernel(t *testing.T) {
	b, err := os.ReadFile("testdata/uboot-armhf-bad-kernel.txt")
	if err != nil {
		t.Fatal(err)
	}
	m, evs := feed(t, profile(t, "uc22"), b, 100*time.Millisecond)
	v := m.Verdict()
	if v.Reason != console.ReasonBootloaderError || !strings.Contains(v.Detail, "zimage: Bad magic!") {
		t.Fatalf("verdict %+v", v)
	}
	for _, e := range evs {
		if e.Kind == console.EventStage && e.Stage == "install-boot" {
			t.Errorf("install-boot reached on U-Boot's echo: %+v", e)
		}
	}
}
