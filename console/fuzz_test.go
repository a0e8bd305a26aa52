package console_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/flashstation/flashstation/console"
)

// FuzzSplitter: any bytes, in any chunking, give valid UTF-8 lines no
// longer than MaxLine, without control characters or escapes.
func FuzzSplitter(f *testing.F) {
	if b, err := os.ReadFile("testdata/uc20-first-boot-composite.txt"); err == nil {
		f.Add(b[:4096], uint8(7))
	}
	f.Add([]byte("a\r\r\nb\x1b[0;32mc\x1b]0;t\x07\b\xff\r"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		var s console.Splitter
		m := console.Splitter{MarkUnreadable: true} // the QA rendering
		n := int(step%64) + 1
		// A marker is at most 32 bytes, for at least one byte of input.
		checkMarked := func(l string) {
			if !utf8.ValidString(l) || len(l) > 32*console.MaxLine {
				t.Fatalf("bad marked line %q", l)
			}
			for _, r := range l {
				if r < 0x20 && r != '\t' || r == 0x7f || r == 0x1b {
					t.Fatalf("control %q in marked %q", r, l)
				}
			}
		}
		check := func(l string) {
			if !utf8.ValidString(l) || len(l) > console.MaxLine+3 {
				t.Fatalf("bad line %q", l)
			}
			for _, r := range l {
				if r < 0x20 && r != '\t' || r == 0x1b {
					t.Fatalf("control %q in %q", r, l)
				}
			}
		}
		for i := 0; i < len(data); i += n {
			s.Write(data[i:min(i+n, len(data))])
			m.Write(data[i:min(i+n, len(data))])
			for _, l := range s.Lines() {
				check(l)
			}
			for _, l := range m.Lines() {
				checkMarked(l)
			}
		}
		check(s.Partial())
		checkMarked(m.Partial())
	})
}

// FuzzMachine: the stage machine never panics and ends in a consistent
// state whatever arrives on the console. A machine expecting a seed label
// ends as one expecting none, unless it failed on the label; the label it
// records is a well-formed one.
func FuzzMachine(f *testing.F) {
	if b, err := os.ReadFile("testdata/uc20-first-boot-composite.txt"); err == nil {
		f.Add(b, uint16(500))
		f.Add(bytes.Replace(b, []byte("snapd_recovery_system=20210315"), []byte("snapd_recovery_system=2026\xff0101"), 1), uint16(9))
	}
	f.Add([]byte("Kernel panic - not syncing\nInstalling the system\nlogin: "), uint16(3))
	f.Add([]byte("append: snapd_recovery_system=1\r\n[ 0.0] Kernel command line: snapd_recovery_mode=install snapd_recovery_system=20260101 snapd_recovery_system=\x1b[m\r\nInstalling the system\nlogin: "), uint16(5))
	p, _ := console.LoadProfile("uc20")
	const expect = "20210315"
	f.Fuzz(func(t *testing.T, data []byte, step uint16) {
		m := console.NewMachine(p, t0)
		e := console.NewMachine(p, t0)
		e.ExpectSeedLabel(expect)
		now := t0
		n := int(step%1024) + 1
		for i := 0; i < len(data) && !m.Done(); i += n {
			now = now.Add(time.Second)
			m.Feed(now, data[i:min(i+n, len(data))])
			m.Tick(now)
			e.Feed(now, data[i:min(i+n, len(data))])
			e.Tick(now)
		}
		m.Tick(now.Add(time.Hour))
		e.Tick(now.Add(time.Hour))
		if !m.Done() || !e.Done() {
			t.Fatal("not done an hour after the whole-boot cap")
		}
		v, ve := m.Verdict(), e.Verdict()
		if v.Passed == (v.Reason != "") || ve.Passed == (ve.Reason != "") {
			t.Fatalf("verdicts %+v, %+v", v, ve)
		}
		if v.Reason == console.ReasonSeedLabel || len(v.Notes) > 0 {
			t.Fatalf("no label expected, yet %s (notes %q)", v.Reason, v.Notes)
		}
		if l := v.SeedLabel; l != "" && (len(l) > console.MaxSeedLabel || strings.ContainsAny(l, " \t\ufffd")) {
			t.Fatalf("seed label %q", l)
		}
		if len(ve.Notes) > 8 {
			t.Fatalf("%d notes", len(ve.Notes))
		}
		switch {
		case ve.Reason == console.ReasonSeedLabel:
			if !strings.Contains(ve.Detail, "the image's seed is "+expect) {
				t.Fatalf("detail %q", ve.Detail)
			}
		case v.Passed != ve.Passed || v.Reason != ve.Reason || v.Detail != ve.Detail || v.SeedLabel != ve.SeedLabel || len(v.Stages) != len(ve.Stages):
			t.Fatalf("expecting a label changed the verdict: %+v, want %+v", ve, v)
		}
	})
}
