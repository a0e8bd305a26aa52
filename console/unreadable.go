package console

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// At a wrong baud rate random bytes also decode as stray characters (é,
// ß, 霴) or short valid sequences, which would cut one run of garbage into
// many. So text between two unreadable runs joins them when it has fewer
// than islandMin characters or no ASCII character, and a run of at least
// noiseRun bytes also takes the non-ASCII characters right next to it.
const (
	islandMin = 4
	noiseRun  = 16
)

// readableRune reports whether r is text worth showing: a tab or a
// graphic character (not a control, not U+FFFD, which says a decoder
// already lost bytes).
func readableRune(r rune) bool {
	return r == '\t' || r != utf8.RuneError && unicode.IsGraphic(r)
}

// segment is a stretch of a line: text, or unreadable bytes.
type segment struct {
	start, end int
	bad        bool
}

// MarkUnreadable renders a line's bytes as text: valid printable UTF-8
// (and tabs) stays as it is, and each run of other bytes (invalid UTF-8,
// control bytes, U+FFFD, and the stray characters inside such a run, see
// islandMin) becomes one marker with its byte count, "‹312 unreadable
// bytes›". It returns the text and how many bytes the markers stand for.
func MarkUnreadable(b []byte) (string, int) {
	var segs []segment
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		bad := r == utf8.RuneError && size <= 1 || !readableRune(r)
		if n := len(segs); n > 0 && segs[n-1].bad == bad {
			segs[n-1].end = i + size
		} else {
			segs = append(segs, segment{i, i + size, bad})
		}
		i += size
	}
	// Islands between two runs.
	for k := 1; k+1 < len(segs); k++ {
		if s := &segs[k]; !s.bad && segs[k-1].bad && segs[k+1].bad && strayText(b[s.start:s.end]) {
			s.bad = true
		}
	}
	segs = merge(segs)
	// Stray characters at the edges of a long run.
	for k := range segs {
		if s := segs[k]; !s.bad || s.end-s.start < noiseRun {
			continue
		}
		if k > 0 {
			p := &segs[k-1]
			for p.end > p.start {
				r, size := utf8.DecodeLastRune(b[p.start:p.end])
				if r < utf8.RuneSelf {
					break
				}
				p.end -= size
				segs[k].start -= size
			}
		}
		if k+1 < len(segs) {
			n := &segs[k+1]
			for n.start < n.end {
				r, size := utf8.DecodeRune(b[n.start:n.end])
				if r < utf8.RuneSelf {
					break
				}
				n.start += size
				segs[k].end += size
			}
		}
	}
	var out strings.Builder
	dropped := 0
	for _, s := range merge(segs) {
		switch {
		case s.start == s.end:
		case s.bad:
			out.WriteString(UnreadableMarker(s.end - s.start))
			dropped += s.end - s.start
		default:
			out.Write(b[s.start:s.end])
		}
	}
	return out.String(), dropped
}

// strayText reports whether text between two unreadable runs is likely
// noise too: short, or without a single ASCII character.
func strayText(t []byte) bool {
	if utf8.RuneCount(t) < islandMin {
		return true
	}
	for _, c := range t {
		if c < utf8.RuneSelf {
			return false
		}
	}
	return true
}

// merge joins neighbouring segments of the same kind and drops empty ones.
func merge(segs []segment) []segment {
	out := segs[:0]
	for _, s := range segs {
		if s.start == s.end {
			continue
		}
		if n := len(out); n > 0 && out[n-1].bad == s.bad && out[n-1].end == s.start {
			out[n-1].end = s.end
			continue
		}
		out = append(out, s)
	}
	return out
}

// UnreadableMarker is the marker for n unreadable bytes.
func UnreadableMarker(n int) string {
	if n == 1 {
		return "‹1 unreadable byte›"
	}
	return "‹" + strconv.Itoa(n) + " unreadable bytes›"
}
