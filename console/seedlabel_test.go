package console_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/console"
)

// The composite's install boot names recovery system 20210315.
const (
	compositeLabel   = "20210315"
	compositeInstall = "snapd_recovery_mode=install snapd_recovery_system=20210315"
)

// feedChunks feeds data in reads of n bytes, a millisecond apart, then
// ticks at the end.
func feedChunks(t testing.TB, m *console.Machine, data []byte, n int) []console.Event {
	t.Helper()
	var evs []console.Event
	now := t0
	for i := 0; i < len(data) && !m.Done(); i += n {
		now = now.Add(time.Millisecond)
		evs = append(evs, m.Feed(now, data[i:min(i+n, len(data))])...)
		evs = append(evs, m.Tick(now)...)
	}
	return evs
}

func TestSeedLabel(t *testing.T) {
	comp := string(composite(t))
	if !strings.Contains(comp, compositeInstall) {
		t.Fatalf("composite lacks %q", compositeInstall)
	}
	// withInstall is the composite with the install boot kernel command
	// line tail replaced.
	withInstall := func(tail string) string { return strings.Replace(comp, compositeInstall, tail, 1) }
	cmdlineAt := strings.Index(comp, "[    0.000000] Kernel command line:")
	uboot := comp[:cmdlineAt]
	kernel := comp[cmdlineAt:]
	runLine := "snapd_recovery_mode=run\r\n"
	quiet := "\r\nInstalling the system, please wait for reboot\r\n\r\nUbuntu Core 22 on 10.0.0.23 (ttyS0)\r\n\r\nubuntu login: "
	longPad := strings.Repeat("x", console.MaxLine)
	for _, tc := range []struct {
		name, input, expect string
		chunk               int    // read size; 0: line by line
		reason              string // "" passes
		detail              []string
		label               string // Verdict.SeedLabel and SeedLabel()
		note                string // in a note, "" for none
	}{
		{name: "matching label", input: comp, expect: compositeLabel, label: compositeLabel},
		{name: "no expectation records the label", input: comp, label: compositeLabel},
		{name: "another image", input: comp, expect: "20260101", reason: console.ReasonSeedLabel,
			detail: []string{"recovery system 20210315", "seed is 20260101", "booted another image"}, label: compositeLabel},
		{name: "another image, no U-Boot", input: kernel, expect: "20260101", reason: console.ReasonSeedLabel, label: compositeLabel},
		{name: "split in reads of 7 bytes", input: comp, expect: "20260101", chunk: 7, reason: console.ReasonSeedLabel, label: compositeLabel},
		{name: "split byte by byte", input: comp, expect: compositeLabel, chunk: 1, label: compositeLabel},
		{name: "U-Boot echo is not the boot", expect: compositeLabel, label: compositeLabel,
			input: uboot + "append: console=ttyAMA0 snapd_recovery_mode=install snapd_recovery_system=20260901\r\n" +
				"bootargs=snapd_recovery_system=20260901\r\n" + kernel},
		{name: "U-Boot echo of the right label does not rescue the kernel's", expect: "20260101", reason: console.ReasonSeedLabel, label: compositeLabel,
			input: uboot + "append: snapd_recovery_mode=install snapd_recovery_system=20260101\r\n" + kernel},
		{name: "ANSI, spinner CR and CRCRLF", expect: "20260101", label: "20260101",
			input: withInstall("snapd_recovery_mode=install \x1b[1;32msnapd_recovery_system=20260101\x1b[0m\r\r")},
		{name: "redrawn line", expect: "20260101", label: "20260101",
			input: strings.Replace(withInstall("snapd_recovery_mode=install snapd_recovery_system=20260101"), "[    0.000000] Kernel command line:",
				"[    0.000000] Kernel command line: snapd_recovery_mode=install snapd_recovery_system=1999\r[    0.000000] Kernel command line:", 1),
			chunk: 3},
		{name: "no label on the install boot", input: withInstall("snapd_recovery_mode=install"), expect: "20260101",
			note: "names no recovery system"},
		{name: "no label and no expectation", input: withInstall("snapd_recovery_mode=install")},
		{name: "quiet kernel", input: quiet, expect: "20260101", note: "the seed label was not checked"},
		{name: "line noise on the command line", expect: "20260101", label: "20260102", note: "not taken as a mismatch",
			input: withInstall("snapd_recovery_mode=install \xff\xfe snapd_recovery_system=20260102")},
		{name: "unreadable label", expect: "20260101", note: "unreadable recovery system",
			input: withInstall("snapd_recovery_mode=install snapd_recovery_system=2026\x01\x02\xc3(0101")},
		{name: "overlong label", expect: "20260101", note: "unreadable recovery system",
			input: withInstall("snapd_recovery_mode=install snapd_recovery_system=" + strings.Repeat("2", console.MaxSeedLabel+1))},
		{name: "the last word counts", expect: "20260101", label: "20260101",
			input: withInstall("snapd_recovery_mode=install snapd_recovery_system=20210315 snapd_recovery_system=20260101")},
		{name: "label at the end of a long line", expect: "20260101", label: "20260101",
			input: withInstall("snapd_recovery_mode=install " + longPad[:console.MaxLine-600] + " snapd_recovery_system=20260101")},
		{name: "label past the line cap is not read", expect: "20260101", note: "names no recovery system",
			input: withInstall("snapd_recovery_mode=install " + longPad + " snapd_recovery_system=20210315")},
		{name: "run boot naming another label", expect: compositeLabel, reason: console.ReasonSeedLabel, label: compositeLabel,
			detail: []string{"recovery system 20260101", "seed is 20210315"},
			input:  strings.Replace(comp, runLine, "snapd_recovery_mode=run snapd_recovery_system=20260101\r\n", 1)},
		{name: "run boot naming the same label", expect: compositeLabel, label: compositeLabel,
			input: strings.Replace(comp, runLine, "snapd_recovery_mode=run snapd_recovery_system=20210315\r\n", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := console.NewMachine(profile(t, "uc20"), t0)
			m.ExpectSeedLabel(tc.expect)
			var evs []console.Event
			if tc.chunk > 0 {
				evs = feedChunks(t, m, []byte(tc.input), tc.chunk)
			} else {
				for _, l := range bytes.SplitAfter([]byte(tc.input), []byte("\n")) {
					evs = append(evs, m.Feed(t0.Add(time.Second), l)...)
				}
			}
			v := m.Verdict()
			if !m.Done() {
				t.Fatalf("not done: waiting for %s", m.Current())
			}
			if tc.reason == "" && !v.Passed {
				t.Fatalf("failed: %s: %s", v.Reason, v.Detail)
			}
			if tc.reason != "" && (v.Passed || v.Reason != tc.reason) {
				t.Fatalf("verdict passed %v %s: %s; want %s", v.Passed, v.Reason, v.Detail, tc.reason)
			}
			for _, d := range tc.detail {
				if !strings.Contains(v.Detail, d) {
					t.Errorf("detail %q lacks %q", v.Detail, d)
				}
			}
			if v.SeedLabel != tc.label || m.SeedLabel() != tc.label {
				t.Errorf("seed label %q (machine %q), want %q", v.SeedLabel, m.SeedLabel(), tc.label)
			}
			var labelEvents, noteEvents []string
			for _, e := range evs {
				switch e.Kind {
				case console.EventSeedLabel:
					labelEvents = append(labelEvents, e.Detail)
				case console.EventNote:
					noteEvents = append(noteEvents, e.Detail)
				case console.EventFail:
					if tc.reason == console.ReasonSeedLabel && !strings.HasPrefix(tc.name, "run boot") && e.Stage != "install-boot" {
						t.Errorf("failed in stage %s, want install-boot", e.Stage)
					}
				case console.EventStage:
					if tc.reason == console.ReasonSeedLabel && e.Stage == "install-boot" && !strings.HasPrefix(tc.name, "run boot") {
						t.Errorf("the install boot of another image reached install-boot")
					}
				}
			}
			if want := tc.label; (want == "") != (len(labelEvents) == 0) || len(labelEvents) > 1 || (want != "" && labelEvents[0] != want) {
				t.Errorf("label events %q, want one of %q", labelEvents, want)
			}
			if strings.Join(noteEvents, "\n") != strings.Join(v.Notes, "\n") {
				t.Errorf("note events %q, verdict notes %q", noteEvents, v.Notes)
			}
			switch {
			case tc.note == "" && len(v.Notes) > 0:
				t.Errorf("notes %q, want none", v.Notes)
			case tc.note != "" && (len(v.Notes) != 1 || !strings.Contains(v.Notes[0], tc.note)):
				t.Errorf("notes %q, want one with %q", v.Notes, tc.note)
			}
		})
	}
}

// TestSeedLabelUC16: a UC16/UC18 boot has no recovery system; with no
// label expected (what a UC16 line gives) nothing is checked or noted.
func TestSeedLabelUC16(t *testing.T) {
	m := console.NewMachine(profile(t, "uc16"), t0)
	m.ExpectSeedLabel("")
	m.Feed(t0.Add(time.Second), []byte("[ 0.0] Kernel command line: console=ttyS0 root=/dev/mmcblk0p2\r\nWelcome to Ubuntu Core 18!\r\nMark system seeded\r\nubuntu login: "))
	if v := m.Verdict(); !v.Passed || v.SeedLabel != "" || len(v.Notes) != 0 {
		t.Errorf("%+v", v)
	}
}

// TestSeedLabelArmhfUBoot: the QEMU board U-Boot echoes a label it would
// pass to a kernel that never runs: it is not recorded, and the verdict
// stays the bootloader's.
func TestSeedLabelArmhfUBoot(t *testing.T) {
	b, err := os.ReadFile("testdata/uboot-armhf-bad-kernel.txt")
	if err != nil {
		t.Fatal(err)
	}
	m := console.NewMachine(profile(t, "uc22"), t0)
	m.ExpectSeedLabel("20260101")
	feedChunks(t, m, b, 64)
	if v := m.Verdict(); v.Reason != console.ReasonBootloaderError || v.SeedLabel != "" || m.SeedLabel() != "" {
		t.Errorf("%+v", v)
	}
}

// TestWatchMachineSeedLabel: a console watch with a machine set up by the
// caller checks the label on a real (pseudo-terminal) console.
func TestWatchMachineSeedLabel(t *testing.T) {
	for _, tc := range []struct {
		expect, reason string
	}{
		{compositeLabel, ""},
		{"20260101", console.ReasonSeedLabel},
	} {
		t.Run(tc.expect, func(t *testing.T) {
			b := newBoard(t, "")
			c := openConsole(t, b.link, nil)
			go b.play(composite(t))
			start := time.Now()
			m := console.NewMachine(profile(t, "uc20"), start)
			m.ExpectSeedLabel(tc.expect)
			var labels []string
			v := c.WatchMachine(context.Background(), m, func(e console.Event) {
				if e.Kind == console.EventSeedLabel {
					labels = append(labels, e.Detail)
				}
			})
			if v.Passed != (tc.reason == "") || v.Reason != tc.reason || v.SeedLabel != compositeLabel {
				t.Errorf("verdict %+v", v)
			}
			if len(labels) != 1 || labels[0] != compositeLabel {
				t.Errorf("label events %q", labels)
			}
		})
	}
}
