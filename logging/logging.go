// Package logging builds the station's zerolog loggers.
//
// Loggers are injected, never global: commands build one with Open (JSON
// lines appended to a file in the data directory, which keeps the terminal
// free for the TUI) or New (any writer, for tests and headless runs) and pass
// it down. Secrets are redacted by their type (package secret), not by
// filtering log lines.
package logging

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// FileName is the log file's name inside the log directory.
const FileName = "flashstation.log"

// New returns a logger writing JSON lines to w at the given level
// ("debug", "info", "warn", "error"; empty means info).
func New(w io.Writer, level string) (zerolog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), err
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// ParseLevel parses a level name; empty means info.
func ParseLevel(level string) (zerolog.Level, error) {
	if strings.TrimSpace(level) == "" {
		return zerolog.InfoLevel, nil
	}
	lvl, err := zerolog.ParseLevel(strings.ToLower(strings.TrimSpace(level)))
	if err != nil || lvl == zerolog.NoLevel {
		return zerolog.InfoLevel, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", level)
	}
	return lvl, nil
}

// Open creates dir if needed and returns a logger appending JSON lines to
// dir/flashstation.log, with the file to close when done.
func Open(dir, level string) (zerolog.Logger, io.Closer, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return zerolog.Nop(), nil, fmt.Errorf("create log directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return zerolog.Nop(), nil, fmt.Errorf("open log file: %w", err)
	}
	log, err := New(f, level)
	if err != nil {
		f.Close()
		return zerolog.Nop(), nil, err
	}
	return log, f, nil
}

func init() {
	// Millisecond timestamps in UTC keep log lines sortable and comparable
	// with console transcripts and ledger events.
	zerolog.TimeFieldFormat = time.RFC3339Nano
	zerolog.TimestampFunc = func() time.Time { return time.Now().UTC() }
}
