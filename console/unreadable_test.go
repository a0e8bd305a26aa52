package console_test

import (
	"bytes"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/flashstation/flashstation/console"
)

// baudGarbage is what a console at the wrong baud rate gives: high bytes,
// some of which happen to decode as valid UTF-8.
func baudGarbage(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(0x80 | rng.IntN(128))
	}
	return out
}

func TestMarkUnreadable(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		dropped int
	}{
		{"text stays", "Starting kernel ...", "Starting kernel ...", 0},
		{"utf-8 text stays", "Grüße, 世界 ✔\tok", "Grüße, 世界 ✔\tok", 0},
		{"empty", "", "", 0},
		{"one bad byte", "kern\xffl", "kern‹1 unreadable byte›l", 1},
		{"a run is one marker", "boot \xff\xfe\x80\x81\x82 done", "boot ‹5 unreadable bytes› done", 5},
		{"control bytes", "a\x00\x01\x02b", "a‹3 unreadable bytes›b", 3},
		{"controls and invalid bytes in one run", "x\x07\xc3\x28\x00y", "x‹4 unreadable bytes›y", 4}, // "(" is a stray island,
		{"a short island joins the run", "ok \xff\xfeé\xfd\xfc end", "ok ‹6 unreadable bytes› end", 6},
		{"a non-ASCII island joins the run", "a \xff\xfeéßüö\xfd b", "a ‹11 unreadable bytes› b", 11},
		{"text next to a short run keeps its letters", "Gr\xffüße", "Gr‹1 unreadable byte›üße", 1},
		{"a long run takes stray letters next to it", "ok " + strings.Repeat("\xff", 16) + "ҩ ok", "ok ‹18 unreadable bytes› ok", 18},
		{"a long island stays", "\xffabcd\xff", "‹1 unreadable byte›abcd‹1 unreadable byte›", 2},
		{"leading and trailing text stay short", "a\xffb", "a‹1 unreadable byte›b", 1},
		{"only garbage", "\xff\xfe\xfd", "‹3 unreadable bytes›", 3},
		{"a replacement character is unreadable", "a\uFFFDb", "a‹3 unreadable bytes›b", 3},
		{"C1 control", "a\u0085b", "a‹2 unreadable bytes›b", 2},
		{"truncated sequence at the end", "abc\xe2\x9c", "abc‹2 unreadable bytes›", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped := console.MarkUnreadable([]byte(tc.in))
			if got != tc.want || dropped != tc.dropped {
				t.Errorf("MarkUnreadable(%q) = %q, %d; want %q, %d", tc.in, got, dropped, tc.want, tc.dropped)
			}
		})
	}
}

// TestMarkUnreadableBaudGarbage: 312 bytes at the wrong baud rate are one
// marker, however many of them decode as stray letters.
func TestMarkUnreadableBaudGarbage(t *testing.T) {
	for seed := range uint64(20) {
		g := baudGarbage(312, seed)
		got, dropped := console.MarkUnreadable(append(append([]byte("U-Boot "), g...), " login: "...))
		if want := "U-Boot ‹312 unreadable bytes› login: "; got != want || dropped != 312 {
			t.Errorf("seed %d: %q, %d; want %q", seed, got, dropped, want)
		}
	}
}

// TestRenderCleanMarksUnreadable: the QA rendering keeps text and shows a
// baud mismatch as a marker per line, never as mojibake.
func TestRenderCleanMarksUnreadable(t *testing.T) {
	at := time.Date(2026, 11, 28, 9, 30, 0, 0, time.UTC)
	g := baudGarbage(312, 1)
	recs := []console.Record{
		{At: at, Dir: '<', Data: []byte("U-Boot 2024.01\r\n")},
		{At: at.Add(time.Second), Dir: '<', Data: g[:100]},
		{At: at.Add(2 * time.Second), Dir: '<', Data: append(g[100:], "\r\n"...)},
		{At: at.Add(3 * time.Second), Dir: '<', Data: []byte("\x1b[0;32m  OK  \x1b[0m Started\a\r\n")},
	}
	var out bytes.Buffer
	if err := console.RenderClean(recs, &out); err != nil {
		t.Fatal(err)
	}
	want := "[    0.000] U-Boot 2024.01\n" +
		"[    1.000] ‹312 unreadable bytes›\n" +
		"[    3.000]   OK   Started‹1 unreadable byte›\n"
	if out.String() != want {
		t.Errorf("clean rendering:\n%s\nwant:\n%s", out.String(), want)
	}
}

var markerRE = regexp.MustCompile(`‹(\d+) unreadable bytes?›`)

// FuzzMarkUnreadable: any bytes give valid UTF-8 without control bytes
// (tab aside); the text kept is the input's, in order, and the markers
// stand for exactly the bytes left out.
func FuzzMarkUnreadable(f *testing.F) {
	f.Add([]byte("Starting kernel ..."))
	f.Add([]byte("ok \xff\xfeé\xfd\xfc end\x00\t\u0085"))
	f.Add(baudGarbage(64, 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, dropped := console.MarkUnreadable(data)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 %q", out)
		}
		for _, r := range out {
			if r < 0x20 && r != '\t' || r >= 0x7f && r <= 0x9f || r == utf8.RuneError {
				t.Fatalf("control %q in %q", r, out)
			}
		}
		if bytes.Contains(data, []byte("unreadable byte")) {
			return // the input's own text would read as a marker
		}
		// Walk the input along the output: text must be the input's own
		// bytes, each marker skips its count.
		pos, sum := 0, 0
		rest := out
		for rest != "" {
			loc := markerRE.FindStringSubmatchIndex(rest)
			text := rest
			if loc != nil {
				text = rest[:loc[0]]
			}
			if !strings.HasPrefix(string(data[pos:]), text) {
				t.Fatalf("kept text %q is not the input's at %d (%q)", text, pos, data)
			}
			pos += len(text)
			if loc == nil {
				break
			}
			n, _ := strconv.Atoi(rest[loc[2]:loc[3]])
			if n <= 0 {
				t.Fatalf("marker of %d bytes in %q", n, out)
			}
			pos += n
			sum += n
			rest = rest[loc[1]:]
		}
		if pos != len(data) || sum != dropped {
			t.Fatalf("markers count %d (returned %d), walk ends at %d of %d: %q -> %q", sum, dropped, pos, len(data), data, out)
		}
	})
}
