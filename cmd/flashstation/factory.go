package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
)

// ledgerFlagHelp is the --ledger flag's help of the read commands.
const ledgerFlagHelp = "read the factory ledger instead of the station's: a postgres:// URL, " +
	"or env:NAME or file:PATH holding it (a URL with a password belongs there: arguments are visible to every user)"

// factoryDSN resolves a --ledger value: a URL, or env:NAME or file:PATH
// that holds one. A URL given with its password is used, with a warning.
func factoryDSN(spec string, stderr io.Writer) (string, error) {
	var dsn string
	switch {
	case strings.HasPrefix(spec, "env:"):
		name := strings.TrimPrefix(spec, "env:")
		v, ok := os.LookupEnv(name)
		if !ok || strings.TrimSpace(v) == "" {
			return "", usageHint(fmt.Errorf("--ledger %s: the environment variable %s is not set", spec, name),
				"Export the factory ledger's URL in it, e.g. FLASHSTATION_LEDGER_URL=postgres://user:password@host/flashstation.")
		}
		dsn = strings.TrimSpace(v)
	case strings.HasPrefix(spec, "file:"):
		path := strings.TrimPrefix(spec, "file:")
		b, err := os.ReadFile(path)
		if err != nil {
			return "", usageHint(fmt.Errorf("--ledger %s: %w", spec, err), "Give a file that holds the factory ledger's URL (mode 0600).")
		}
		dsn = strings.TrimSpace(string(b))
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 && ledger.URLHasPassword(dsn) {
			fmt.Fprintf(stderr, "warning: %s holds the factory ledger's password and other users can read it: chmod 600 %[1]s\n", path)
		}
	default:
		dsn = spec
		if ledger.IsFactoryURL(dsn) && ledger.URLHasPassword(dsn) {
			fmt.Fprintln(stderr, "warning: --ledger gives a password on the command line, where every user of this machine can read it; use --ledger env:NAME or file:PATH")
		}
	}
	if !ledger.IsFactoryURL(dsn) {
		return "", usageHint(fmt.Errorf("--ledger: %s is not a postgres:// URL", ledger.RedactURL(dsn)),
			"Give the factory ledger as postgres://[user[:password]@]host[:port]/database (or env:NAME, file:PATH).")
	}
	return dsn, nil
}

// openFactoryRead opens the factory ledger for a read command.
func openFactoryRead(ctx context.Context, spec string, stderr io.Writer) (*ledger.Ledger, error) {
	dsn, err := factoryDSN(spec, stderr)
	if err != nil {
		return nil, err
	}
	led, err := ledger.OpenFactoryReadOnly(ctx, dsn)
	var off ledger.ErrOffline
	switch {
	case errors.As(err, &off):
		return nil, &exitError{code: exitOffline, reason: reasonOffline, err: err,
			hint: "Check that PostgreSQL runs and that the URL's host, port or socket, user and password are right (psql with the same URL tells more)."}
	case err != nil:
		return nil, configError(err, "Start a bench of this version on the factory ledger once (it creates and migrates its tables).")
	}
	return led, nil
}

// recordSource is where a read command reads: the station's ledger, or
// with --ledger the factory ledger.
type recordSource struct {
	config, spec string
}

func (r *recordSource) register(cmd *cobra.Command) { r.registerWith(cmd, defaultConfig()) }

// registerWith registers the flags with config's default.
func (r *recordSource) registerWith(cmd *cobra.Command, config string) {
	cmd.Flags().StringVar(&r.config, "config", config, "station file")
	cmd.Flags().StringVar(&r.spec, "ledger", "", ledgerFlagHelp)
}

// factory reports whether the command reads the factory ledger.
func (r *recordSource) factory() bool { return r.spec != "" }

// open opens the record. With --ledger the station file is read only when
// --config (or FLASHSTATION_CONFIG) names one: a supervisor's machine has
// none.
func (r *recordSource) open(cmd *cobra.Command, stderr io.Writer) (*ledger.Ledger, *lines.Station, error) {
	ctx := cmd.Context()
	if !r.factory() {
		st, err := loadStation(r.config, stderr)
		if err != nil {
			return nil, nil, err
		}
		led, err := openReadLedger(ctx, st)
		return led, st, err
	}
	st := &lines.Station{}
	if cmd.Flags().Changed("config") || os.Getenv("FLASHSTATION_CONFIG") != "" {
		var err error
		if st, err = loadStation(r.config, stderr); err != nil {
			return nil, nil, err
		}
	}
	led, err := openFactoryRead(ctx, r.spec, stderr)
	if err != nil {
		return nil, nil, err
	}
	if st.Path == "" {
		st.Path = "the factory ledger " + led.Path()
	}
	return led, st, nil
}

// watchEvery is how often status --watch refreshes.
const watchEvery = 2 * time.Second

// factoryStatus is status --ledger: the factory's figures, once or, with
// --watch, refreshed in place until the command is stopped.
func factoryStatus(cmd *cobra.Command, led *ledger.Ledger, st *lines.Station, sc scope, f ledger.StatsFilter, station string,
	watch, asJSON bool, stdout io.Writer) error {
	ctx := cmd.Context()
	if sc.batch != 0 {
		return usageErrorf("--batch: batch numbers are each bench's own; on the factory ledger select with --line, --station, --since and --until")
	}
	if f.Verdict != "" {
		return usageErrorf("--verdict: the factory's figures cover every outcome; export --ledger --verdict lists units of one")
	}
	if watch && asJSON {
		return usageErrorf("--watch refreshes a terminal; a script reads --json without --watch, as often as it likes")
	}
	if err := checkScope(ctx, led, st, sc.line, 0); err != nil {
		return err
	}
	if station != "" {
		if err := checkStation(ctx, led, station); err != nil {
			return err
		}
	}
	ff := ledger.FactoryFilter{LineID: f.LineID, StationID: station, Since: f.Since, Until: f.Until}
	render := func() ([]byte, error) {
		rep, err := led.FactoryReport(ctx, ff)
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		if asJSON {
			enc := json.NewEncoder(&b)
			enc.SetIndent("", "  ")
			err = enc.Encode(rep)
		} else {
			printFactory(&b, led.Path(), sc, station, rep)
		}
		return b.Bytes(), err
	}
	out, err := render()
	if err != nil {
		return err
	}
	if !watch {
		_, err = stdout.Write(out)
		return err
	}
	_, tty := terminal(stdout)
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		if tty {
			// Home and clear: the figures replace the last ones.
			fmt.Fprint(stdout, "\x1b[H\x1b[2J")
		}
		if _, err := stdout.Write(out); err != nil {
			return err
		}
		if !tty {
			fmt.Fprintln(stdout)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if out, err = render(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// The factory ledger went away: say so in place, keep trying.
			out = []byte(fmt.Sprintf("factory ledger %s: %v (retrying every %s)\n", led.Path(), err, watchEvery))
		}
	}
}

// checkStation refuses a --station the factory ledger does not know
// (exit 3).
func checkStation(ctx context.Context, led *ledger.Ledger, station string) error {
	lines, err := led.Lines(ctx)
	if err != nil {
		return err
	}
	var known []string
	for _, l := range lines {
		if l.StationID == station {
			return nil
		}
		if !slices.Contains(known, l.StationID) {
			known = append(known, l.StationID)
		}
	}
	hint := "No bench has forwarded to this factory ledger yet."
	if len(known) > 0 {
		hint = fmt.Sprintf("Give one of the benches it knows (%s), or leave out --station for all of them.", strings.Join(known, ", "))
	}
	return noMatch(hint, "no station %q in the factory ledger %s", station, led.Path())
}

// figureRow is one row of the factory table.
func figureRow(w io.Writer, name string, s ledger.Stats) {
	fmt.Fprintf(w, "%-26s %6d %6d %5d %4d %6d %4d %7s %7s %7s %6.1fs %6.1fs\n", name, s.Units, s.Passed, s.Failed, s.Errors,
		s.Aborted, s.InProgress, ledger.Percent(s.Yield), ledger.Percent(s.FirstPassYield), ledger.Rate(s.UnitsPerHour),
		s.MedianFlashSecs, s.MedianBootSecs)
}

// printFactory prints a factory report as a table: all, each line and its
// benches, each bench; then silent benches, failures, suspect slots and
// duplicates across benches.
func printFactory(w io.Writer, where string, sc scope, station string, rep ledger.FactoryReport) {
	title := "factory ledger " + where
	if sc.line != "" {
		title += ", line " + sc.line
	}
	if station != "" {
		title += ", station " + station
	}
	if sc.since != "" {
		title += ", since " + sc.since
	}
	if sc.until != "" {
		title += ", until " + sc.until
	}
	fmt.Fprintf(w, "%s, at %s\n", title, rep.At.Local().Format("2006-01-02 15:04:05"))
	fmt.Fprintf(w, "%-26s %6s %6s %5s %4s %6s %4s %7s %7s %7s %7s %7s\n", "", "units", "pass", "fail", "err", "abort", "run",
		"yield", "FPY", "pass/h", "flash", "boot")
	figureRow(w, "all", rep.Total)
	for _, l := range rep.Lines {
		figureRow(w, "line "+l.Line, l.Stats)
		for _, lb := range rep.LineBench {
			if lb.Line == l.Line {
				figureRow(w, "  "+lb.Station, lb.Stats)
			}
		}
	}
	if len(rep.Benches) > 1 {
		fmt.Fprintln(w, "benches:")
		for _, b := range rep.Benches {
			figureRow(w, "  "+b.Station, b.Stats)
		}
	}
	var seen []string
	for _, b := range rep.Stations {
		switch {
		case b.SeenAt.IsZero():
			seen = append(seen, b.Station+" SILENT (never seen)")
		case b.Silent:
			seen = append(seen, fmt.Sprintf("%s SILENT since %s", b.Station, b.SeenAt.Local().Format("2006-01-02 15:04:05")))
		default:
			seen = append(seen, fmt.Sprintf("%s seen %s", b.Station, b.SeenAt.Local().Format("15:04:05")))
		}
	}
	fmt.Fprintf(w, "stations: %s\n", strings.Join(seen, " · "))
	if len(rep.Total.Pareto) > 0 {
		fmt.Fprintln(w, "failures:")
		for _, r := range rep.Total.Pareto {
			fmt.Fprintf(w, "  %5d  %-22s %s\n", r.Count, r.Reason, lines.ReasonFor(r.Reason).What)
		}
	}
	if len(rep.Total.ErrorReasons) > 0 {
		fmt.Fprintln(w, "station errors:")
		for _, r := range rep.Total.ErrorReasons {
			fmt.Fprintf(w, "  %5d  %-22s %s\n", r.Count, r.Reason, lines.ReasonFor(r.Reason).What)
		}
	}
	var suspects []string
	for _, lb := range rep.LineBench {
		for _, sl := range lb.Slots {
			if sl.Suspect {
				suspects = append(suspects, fmt.Sprintf("%s %s (%d of %d failed, %d boards)", lb.Station, sl.Slot, sl.Failed, sl.Units, sl.FailedBoards))
			}
		}
	}
	if len(suspects) > 0 {
		fmt.Fprintf(w, "slots failing more than the others (check their cables, hub ports, consoles): %s\n", strings.Join(suspects, ", "))
	}
	if len(rep.Duplicates) > 0 {
		fmt.Fprintln(w, "RECORDED ON TWO BENCHES (one device, or one identity given twice: check with QA):")
		for _, d := range rep.Duplicates {
			fmt.Fprintf(w, "  %-10s %s on %s\n", d.Kind, d.Value, strings.Join(d.Stations, ", "))
		}
	}
}
