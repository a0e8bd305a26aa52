package tui

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/ledger"
)

// clock formats a duration as m:ss (or h:mm:ss).
func clock(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// secs formats a duration in seconds with a tenth.
func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// bytesIEC formats a size.
func bytesIEC(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// mbps formats a rate in MB/s (10^6 bytes).
func mbps(bytesPerSec float64) string { return fmt.Sprintf("%.1f MB/s", bytesPerSec/1e6) }

func pct(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }

// fit truncates s (which may hold ANSI styles) to w cells and pads it to
// exactly w.
func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if lipgloss.Width(s) > w {
		s = ansi.Truncate(s, w, "…")
	}
	if n := w - lipgloss.Width(s); n > 0 {
		s += strings.Repeat(" ", n)
	}
	return s
}

// spread puts left and right on one line of width w, the right part
// flush right; left is truncated first.
func spread(left, right string, w int) string {
	rw := lipgloss.Width(right)
	if rw >= w {
		return fit(right, w)
	}
	return fit(left, w-rw-1) + " " + right
}

// plural says "1 slot" or "3 slots".
func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// sanitize keeps a console line printable: no control bytes that would
// move the cursor.
func sanitize(s string) string {
	if strings.ContainsRune(s, utf8.RuneError) {
		s, _ = console.MarkUnreadable([]byte(s)) // one marker per run, as the clean transcript has
	}
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return s
	}
	if strings.Contains(s, "\x1b") {
		s = ansi.Strip(s)
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return ' '
		case r < 0x20 || r == 0x7f:
			return -1
		}
		return r
	}, s)
}

// flow lays fields out on lines of width w, separated by sep, wrapping
// between fields (a field wider than w is truncated).
func flow(fields []string, sep string, w int) []string {
	var out []string
	cur := ""
	for _, f := range fields {
		if f == "" {
			continue
		}
		switch {
		case cur == "":
			cur = f
		case lipgloss.Width(cur)+lipgloss.Width(sep)+lipgloss.Width(f) <= w:
			cur += sep + f
		default:
			out = append(out, fit(cur, w))
			cur = f
		}
	}
	if cur != "" {
		out = append(out, fit(cur, w))
	}
	return out
}

// wrap breaks plain text into at most n lines of width w, on spaces when
// it can; the last line ends with … when text is left over.
func wrap(s string, w, n int) []string {
	var out []string
	r := []rune(s)
	for len(r) > 0 && len(out) < n {
		if len(r) <= w {
			out = append(out, string(r))
			r = nil
			break
		}
		cut := w
		for i := w; i > w/2; i-- {
			if r[i] == ' ' {
				cut = i
				break
			}
		}
		out = append(out, string(r[:cut]))
		r = []rune(strings.TrimLeft(string(r[cut:]), " "))
	}
	if len(r) > 0 && len(out) > 0 {
		last := []rune(out[len(out)-1])
		if len(last) >= w {
			last = last[:w-1]
		}
		out[len(out)-1] = string(last) + "…"
	}
	return out
}

// outcomeWord is a unit's outcome as it is shown, glyph and word, in its
// colour: the board's fault (FAIL) never looks like the station's (ERROR)
// or a stop (ABORTED).
func outcomeWord(st *Styles, state string) string {
	switch state {
	case ledger.UnitPass:
		return st.OK.Render("✔ PASS")
	case ledger.UnitFail:
		return st.Bad.Render("✘ FAIL")
	case ledger.UnitError:
		return st.Warn.Render("⚠ ERROR")
	case ledger.UnitAborted:
		return st.Dim.Render("■ ABORTED")
	}
	return strings.ToUpper(state)
}
