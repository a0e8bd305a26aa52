package console

import (
	"strings"
	"unicode/utf8"
)

// MaxSeedLabel bounds a recovery system label read from the console. The
// labels snapd and the image tools make are dates with an optional suffix
// ("20260101", "20260101-1"); anything longer is not taken for a label.
const MaxSeedLabel = 64

// Kernel command line words the seed label check reads.
const (
	cmdlineMarker = "Kernel command line:"
	systemKey     = "snapd_recovery_system="
	modeKey       = "snapd_recovery_mode="
)

// cmdline is what the kernel command line printed on the console says of
// the recovery system.
type cmdline struct {
	mode  string // snapd_recovery_mode ("" when not named)
	label string // snapd_recovery_system, when readable
	// named: a snapd_recovery_system word is on the line (readable or not).
	named bool
	// trusted: the label is well formed and the line shows no unreadable
	// bytes, so it may fail a boot.
	trusted bool
}

// parseCmdline reads the kernel's own "Kernel command line:" line. Only
// the kernel prints that prefix: U-Boot's echo of the arguments it passes
// ("append: ...", "bootargs=...") is not a boot of that system and is not
// read. The line is one the Splitter made (escapes and CRs gone, at most
// MaxLine bytes), so the work is bounded. When a word is given twice, the
// last one counts, as the kernel's own parameters do.
func parseCmdline(line string) (cmdline, bool) {
	i := strings.Index(line, cmdlineMarker)
	if i < 0 {
		return cmdline{}, false
	}
	rest := line[i+len(cmdlineMarker):]
	var c cmdline
	for len(rest) > 0 {
		rest = strings.TrimLeft(rest, " \t")
		end := strings.IndexAny(rest, " \t")
		if end < 0 {
			end = len(rest)
		}
		word := rest[:end]
		rest = rest[end:]
		switch {
		case strings.HasPrefix(word, systemKey):
			c.named = true
			c.label = strings.Trim(word[len(systemKey):], `"`)
			c.trusted = validSeedLabel(c.label)
			if !c.trusted {
				c.label = ""
			}
		case strings.HasPrefix(word, modeKey):
			c.mode = strings.Trim(word[len(modeKey):], `"`)
		}
	}
	if c.trusted && strings.ContainsRune(line, utf8.RuneError) {
		// Line noise on the command line: the label may be read wrong,
		// so it is recorded but fails nothing.
		c.trusted = false
	}
	return c, true
}

// validSeedLabel: a label is 1 to MaxSeedLabel ASCII letters, digits and
// the punctuation "-", "_", "." or "+".
func validSeedLabel(s string) bool {
	if s == "" || len(s) > MaxSeedLabel {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '+':
		default:
			return false
		}
	}
	return true
}
