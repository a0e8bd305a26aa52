package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/internal/datadir"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/logging"
)

// loadStation loads a station file for a command. Problems are printed on
// stderr; errors make it a configuration error (exit 2).
func loadStation(path string, stderr io.Writer) (*lines.Station, error) {
	if path == "" {
		return nil, usageHint(errors.New("--config FILE is required"),
			"Give the station file with --config FILE; 'flashstation demo --data DIR' makes one on a simulated bench.")
	}
	st, problems, err := lines.Load(path)
	if err != nil {
		return nil, stationFileError(path, err)
	}
	for _, p := range problems {
		fmt.Fprintln(stderr, p)
	}
	if n := len(problems.Errors()); n > 0 {
		return nil, &exitError{code: exitUsage, reason: reasonConfig, quiet: true,
			err: fmt.Errorf("%s: invalid configuration (%s)", path, plural(n, "error"))}
	}
	return st, nil
}

// stationFileHint says where a station file comes from.
const stationFileHint = "Give the station file with --config FILE or FLASHSTATION_CONFIG=FILE; " +
	"to try flashstation without a bench, 'flashstation demo' makes one on a simulated bench."

// stationFileError explains a station file that could not be read.
func stationFileError(path string, err error) error {
	if !errors.Is(err, fs.ErrNotExist) {
		return configError(fmt.Errorf("station file %s: %w", path, err),
			"Check the file's permissions, or give another station file with --config FILE or FLASHSTATION_CONFIG=FILE.")
	}
	switch {
	case os.Getenv("FLASHSTATION_CONFIG") == path:
		err = fmt.Errorf("no station file: %s (from FLASHSTATION_CONFIG) does not exist: %w", path, err)
	case path == defaultStationFile:
		err = fmt.Errorf("no station file: no --config given, FLASHSTATION_CONFIG is not set, and the default %s does not exist: %w",
			path, err)
	default:
		err = fmt.Errorf("no station file: %s does not exist: %w", path, err)
	}
	return configError(err, stationFileHint)
}

// stationLine returns the line a --line flag names.
func stationLine(st *lines.Station, id string) (*lines.Line, error) {
	if id == "" {
		return nil, usageErrorf("--line ID is required (lines: %s)", lineIDs(st))
	}
	l, ok := st.LineByID(id)
	if !ok {
		return nil, usageErrorf("line %q is not in %s (lines: %s)", id, st.Path, lineIDs(st))
	}
	return l, nil
}

func lineIDs(st *lines.Station) string {
	ids := make([]string, len(st.Lines))
	for i, l := range st.Lines {
		ids[i] = l.ID
	}
	return strings.Join(ids, ", ")
}

// openLedger opens the station's ledger and records the station and its
// lines in it. Its caller holds the data directory (lockStation).
func openLedger(ctx context.Context, st *lines.Station) (*ledger.Ledger, error) {
	led, err := ledger.Open(ctx, filepath.Join(st.DataDir, ledger.FileName))
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if err := led.EnsureStation(ctx, ledger.Station{ID: st.ID, Hostname: host}); err != nil {
		led.Close()
		return nil, err
	}
	for _, l := range st.Lines {
		rec := ledger.Line{ID: l.ID, StationID: st.ID, Name: l.Name}
		if m, err := l.LoadModel(); err == nil {
			rec.BrandID, rec.Model = m.BrandID, m.Model
		}
		if err := led.EnsureLine(ctx, rec); err != nil {
			led.Close()
			return nil, err
		}
	}
	return led, nil
}

// lockStation takes the station's data directory for this process: every
// command that runs the station or records in its ledger as the station
// holds it until it ends. A second station on the directory is refused
// (exit 2) with who holds it; the reading commands (status, logs, export,
// assertions) take no lock and work beside a running station.
func lockStation(st *lines.Station) (*datadir.Lock, error) {
	return lockDataDir(st.DataDir, stationInUseHint(st.Path))
}

// stationInUseHint says what to do when another station holds the data
// directory of the station file at path.
func stationInUseHint(path string) string {
	return fmt.Sprintf("Stop the station that runs on it first, or give this one its own station.data-dir in %s; "+
		"status, logs, export and assertions work beside a running station.", path)
}

// lockDataDir takes dir's lock; inUseHint says what to do when another
// station holds it.
func lockDataDir(dir, inUseHint string) (*datadir.Lock, error) {
	lock, err := datadir.Acquire(dir)
	var inUse *datadir.InUseError
	switch {
	case errors.As(err, &inUse):
		return nil, configError(err, inUseHint)
	case err != nil:
		return nil, configError(fmt.Errorf("data directory %s: %w", dir, err),
			"The station's user must be able to create and write files in its data directory.")
	}
	return lock, nil
}

// sameDir reports whether a and b name the same existing directory.
func sameDir(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// openReadLedger opens an existing ledger read-only for a reporting
// command. It takes no lock and writes nothing: a reporting command runs
// beside the station (the ledger is in WAL mode) and on a read-only copy.
func openReadLedger(ctx context.Context, st *lines.Station) (*ledger.Ledger, error) {
	path := filepath.Join(st.DataDir, ledger.FileName)
	if _, err := os.Stat(path); err != nil {
		return nil, configError(fmt.Errorf("no ledger at %s: %w", path, err),
			fmt.Sprintf("Run the station with %s first, or check station.data-dir in it.", st.Path))
	}
	return ledger.OpenReadOnly(ctx, path)
}

// stationLogger opens the station's log file in its data directory.
func stationLogger(st *lines.Station) (zerolog.Logger, io.Closer, error) {
	return logging.Open(filepath.Join(st.DataDir, "logs"), st.LogLevel)
}
