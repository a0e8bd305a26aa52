package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/ledger/spool"
	"github.com/flashstation/flashstation/lines"
)

// defaultStationFile is the station file when neither --config nor
// FLASHSTATION_CONFIG names one.
const defaultStationFile = "/etc/flashstation/station.yaml"

// defaultConfig is the station file when --config is not given.
func defaultConfig() string {
	if c := os.Getenv("FLASHSTATION_CONFIG"); c != "" {
		return c
	}
	return defaultStationFile
}

// scope is the units a report covers: the --line, --batch, --since,
// --until and --verdict flags of status and export.
type scope struct {
	line, since, until, verdict string
	batch                       int64
}

func (s *scope) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.line, "line", "", "only this line")
	cmd.Flags().Int64Var(&s.batch, "batch", 0, "only this batch")
	cmd.Flags().StringVar(&s.since, "since", "", "only units started at or after this time (2026-11-28T08:00:00Z, 2026-11-28) or this long ago (8h)")
	cmd.Flags().StringVar(&s.until, "until", "", "only units started before this time, or this long ago")
	cmd.Flags().StringVar(&s.verdict, "verdict", "", "only units with this outcome: pass, fail, error, aborted or running")
}

// filters checks the flags and returns the units they select.
func (s *scope) filters(now time.Time) (ledger.StatsFilter, ledger.UnitFilter, error) {
	f := ledger.StatsFilter{LineID: s.line, BatchID: s.batch, Verdict: s.verdict}
	switch s.verdict {
	case "", ledger.UnitPass, ledger.UnitFail, ledger.UnitError, ledger.UnitAborted, ledger.UnitRunning:
	default:
		return f, ledger.UnitFilter{}, usageErrorf("--verdict %q: want pass, fail, error, aborted or running", s.verdict)
	}
	var err error
	if s.since != "" {
		if f.Since, err = parseSince(s.since, now); err != nil {
			return f, ledger.UnitFilter{}, usageErrorf("--since: %v", err)
		}
	}
	if s.until != "" {
		if f.Until, err = parseSince(s.until, now); err != nil {
			return f, ledger.UnitFilter{}, usageErrorf("--until: %v", err)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, ledger.UnitFilter{}, usageErrorf("--until %s is not after --since %s", s.until, s.since)
	}
	return f, ledger.UnitFilter{LineID: f.LineID, BatchID: f.BatchID, State: f.Verdict, Since: f.Since, Until: f.Until}, nil
}

func newStatusCommand(stdout, stderr io.Writer) *cobra.Command {
	var src recordSource
	var sc scope
	var asJSON, watch bool
	var station string
	cmd := &cobra.Command{
		Use:   "status [--config FILE | --ledger URL [--station ID] [--watch]] [--line ID] [--batch ID] [--since T] [--until T] [--verdict V] [--json]",
		Short: "Batch status for supervisors: counts, yield, throughput, failure pareto",
		Long: `Supervisor figures of the station, a line or a batch: counts, yield,
first-pass yield, units/hour, medians, failure pareto and suspect slots.
With --ledger, the factory's figures from its shared ledger: in all, per line,
per line and bench, per bench, the benches silent for more than a minute and
the serials or device keys two benches recorded; --watch refreshes them in
place every 2 s until interrupted.
Exit 3 when --line, --station or --batch names nothing the record holds;
exit 4 when the factory ledger cannot be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			f, _, err := sc.filters(time.Now())
			if err != nil {
				return err
			}
			if !src.factory() && (station != "" || watch) {
				return usageErrorf("--station and --watch read the factory ledger: give --ledger URL")
			}
			led, st, err := src.open(cmd, stderr)
			if err != nil {
				return err
			}
			defer led.Close()
			if src.factory() {
				return factoryStatus(cmd, led, st, sc, f, station, watch, asJSON, stdout)
			}
			if err := checkScope(ctx, led, st, sc.line, sc.batch); err != nil {
				return err
			}
			s, err := led.Stats(ctx, f)
			if err != nil {
				return err
			}
			if s.Units == 0 && (!f.Since.IsZero() || !f.Until.IsZero() || f.Verdict != "") {
				return noMatch("Widen --since/--until or drop --verdict.", "no unit matches --since/--until/--verdict")
			}
			x := loadStatusExtras(ctx, led, st)
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					ledger.Stats
					// Each line's last reconciliation with its vault's
					// signing log, and the serials still in the spool.
					Reconciled []lines.Reconciliation `json:"reconciled"`
					Spooled    int                    `json:"spooled"`
				}{s, x.reconciled, x.spooled})
			}
			printStats(stdout, st.ID, sc, s, x)
			return nil
		},
	}
	src.register(cmd)
	sc.register(cmd)
	cmd.Flags().StringVar(&station, "station", "", "with --ledger: only this bench")
	cmd.Flags().BoolVar(&watch, "watch", false, "with --ledger: refresh in place every 2 s")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document on stdout")
	return cmd
}

// statusExtras are what status shows beside the figures: each line's last
// reconciliation with its vault, and the spool's pending serials.
type statusExtras struct {
	reconciled   []lines.Reconciliation
	reconciledAt map[string]time.Time
	spooled      int
}

func loadStatusExtras(ctx context.Context, led *ledger.Ledger, st *lines.Station) statusExtras {
	x := statusExtras{reconciled: []lines.Reconciliation{}, reconciledAt: map[string]time.Time{}}
	evs, _ := led.StationEvents(ctx, lines.EventReconcile, 200)
	for _, e := range evs {
		if _, seen := x.reconciledAt[e.Stage]; seen {
			continue
		}
		var r lines.Reconciliation
		if json.Unmarshal(e.Data, &r) == nil && r.Line != "" {
			x.reconciledAt[r.Line] = e.At
			x.reconciled = append(x.reconciled, r)
		}
	}
	x.spooled, _ = spool.Count(lines.SpoolDir(st)) // reading only: no reserve made here
	return x
}

func printStats(w io.Writer, station string, sc scope, s ledger.Stats, x statusExtras) {
	title := "station " + station
	if sc.line != "" {
		title += ", line " + sc.line
	}
	if sc.batch != 0 {
		title += fmt.Sprintf(", batch %d", sc.batch)
	}
	if sc.since != "" {
		title += ", since " + sc.since
	}
	if sc.until != "" {
		title += ", until " + sc.until
	}
	if sc.verdict != "" {
		title += ", only " + sc.verdict
	}
	fmt.Fprintln(w, title)
	fmt.Fprintf(w, "  planned %d   boards %d (finished %d, passed %d)   units %d: passed %d   failed %d   in progress %d\n",
		s.Planned, s.Boards, s.BoardsFinished, s.BoardsPassed, s.Units, s.Passed, s.Failed, s.InProgress)
	fmt.Fprintf(w, "  not the boards' doing (not in yield): station errors %d   aborted %d\n", s.Errors, s.Aborted)
	fmt.Fprintf(w, "  yield %s   first-pass yield %s   %s passes/hour (active %s)\n", ledger.Percent(s.Yield),
		ledger.Percent(s.FirstPassYield), ledger.Rate(s.UnitsPerHour), s.ActiveTime.Round(time.Second))
	fmt.Fprintf(w, "  median flash (write + read-back) %.1fs   median boot %.1fs\n", s.MedianFlashSecs, s.MedianBootSecs)
	if s.Duplicates > 0 || s.Unmatched > 0 {
		fmt.Fprintf(w, "  serials: %d duplicates, %d without a unit\n", s.Duplicates, s.Unmatched)
	}
	for _, r := range x.reconciled {
		verdict := fmt.Sprintf("agree (%d serials)", r.Matched)
		if !r.OK() {
			verdict = fmt.Sprintf("DISAGREE on %s: run flashstation reconcile", plural(len(r.Differences), "serial"))
		}
		fmt.Fprintf(w, "  vault signing log, line %s, at %s: %s\n", r.Line, x.reconciledAt[r.Line].Local().Format("2006-01-02 15:04"), verdict)
	}
	if x.spooled > 0 {
		fmt.Fprintf(w, "  %s in the spool, not in the ledger yet (recorded at the station's next start)\n", plural(x.spooled, "signed serial"))
	}
	if len(s.Pareto) > 0 {
		fmt.Fprintln(w, "failures:")
		for _, r := range s.Pareto {
			fmt.Fprintf(w, "  %4d  %-22s %s\n", r.Count, r.Reason, lines.ReasonFor(r.Reason).What)
		}
	}
	if len(s.ErrorReasons) > 0 {
		fmt.Fprintln(w, "station errors:")
		for _, r := range s.ErrorReasons {
			fmt.Fprintf(w, "  %4d  %-22s %s\n", r.Count, r.Reason, lines.ReasonFor(r.Reason).What)
		}
	}
	var suspects []string
	for _, sl := range s.Slots {
		if sl.Suspect {
			suspects = append(suspects, fmt.Sprintf("%s (%d of %d failed, %d boards)", sl.Slot, sl.Failed, sl.Units, sl.FailedBoards))
		}
	}
	if len(suspects) > 0 {
		fmt.Fprintf(w, "slots failing more than the others (check their cables, hub ports, consoles): %s\n", strings.Join(suspects, ", "))
	}
}

func newLogsCommand(stdout, stderr io.Writer) *cobra.Command {
	var src recordSource
	var bundle string
	cmd := &cobra.Command{
		Use:   "logs SERIAL [--config FILE | --ledger URL] [--bundle OUT.tar.gz]",
		Short: "A unit's evidence for QA: timeline, flash figures, console transcript, serial assertion",
		Long: `Show what the station recorded of a board, by hardware serial or by the
serial in its assertion: every attempt, its timeline, its flash figures, the
clean console transcript and the serial assertion. --bundle writes the latest
attempt as a tar.gz with unit.json, console.log, console.raw, serial.assertion
and flash.json. Exit 3 when no unit has that serial.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			led, _, err := src.open(cmd, stderr)
			if err != nil {
				return err
			}
			defer led.Close()
			ev, err := gatherEvidence(ctx, led, args[0])
			if err != nil {
				return err
			}
			var printed []ledger.SerialAssertion
			var batches []int64
			for _, e := range ev {
				printed = append(printed, e.Assertions...)
				batches = append(batches, e.Unit.BatchID)
			}
			// The image identity shown with each unit is its batch's,
			// checked as the assertions are.
			if err := verifyPrinted(ctx, led, printed, ledger.VerifyBatches(batches...)); err != nil {
				return err
			}
			if bundle != "" {
				if err := ledger.WriteBundleFile(bundle, ev[0]); err != nil {
					return usageHint(fmt.Errorf("--bundle %s: %w", bundle, err),
						"Give --bundle a path in an existing directory this user can write to.")
				}
				fmt.Fprintf(stderr, "wrote %s\n", bundle)
			}
			for i, e := range ev {
				if i > 0 {
					fmt.Fprintln(stdout)
				}
				printEvidence(stdout, e, i == 0)
			}
			return nil
		},
	}
	src.register(cmd)
	cmd.Flags().StringVar(&bundle, "bundle", "", "write the evidence bundle (tar.gz)")
	return cmd
}

func gatherEvidence(ctx context.Context, led *ledger.Ledger, serial string) ([]ledger.Evidence, error) {
	units, err := led.UnitsBySerial(ctx, serial)
	if err != nil {
		return nil, err
	}
	if len(units) == 0 {
		return nil, noMatch("Give a board's hardware serial or the serial in its assertion; "+
			"'flashstation export' lists every unit with both.", "no unit with serial %s in the ledger %s", serial, led.Path())
	}
	var out []ledger.Evidence
	for _, u := range units {
		e, err := led.Evidence(ctx, u.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func printEvidence(w io.Writer, e ledger.Evidence, full bool) {
	u := e.Unit
	verdict := strings.ToUpper(u.State)
	if u.Reason != "" {
		verdict += " " + u.Reason + " (" + lines.ReasonFor(u.Reason).What + ")"
	}
	fmt.Fprintf(w, "unit %d: board %s, slot %s, line %s, batch %d, attempt %d: %s\n", u.ID, u.HWSerial, u.SlotID, u.LineID, u.BatchID, u.Attempt, verdict)
	if u.Serial != "" {
		fmt.Fprintf(w, "  serial %s\n", u.Serial)
	}
	printImage(w, e.Image)
	fmt.Fprintf(w, "  started %s, finished %s\n", u.StartedAt.Local().Format(time.DateTime), u.FinishedAt.Local().Format(time.DateTime))
	fmt.Fprintf(w, "  flash: %s mapped, %s written in %.1fs, read back in %.1fs; boot %.1fs\n",
		human(u.MappedBytes), human(u.WrittenBytes), u.FlashTime.Seconds(), u.VerifyTime.Seconds(), u.BootTime.Seconds())
	if u.Detail != "" {
		fmt.Fprintf(w, "  detail: %s\n", strings.ReplaceAll(u.Detail, "\n", "\n          "))
	}
	fmt.Fprintln(w, "timeline:")
	for _, ev := range e.Events {
		fmt.Fprintf(w, "  %s  %-10s %-14s %s\n", ev.At.Local().Format("15:04:05.000"), ev.Kind, ev.Stage, ev.Message)
	}
	if !full {
		return
	}
	if t, ok := e.Files[ledger.TranscriptClean]; ok && t.Content != nil {
		fmt.Fprintf(w, "console (%s at station %s):\n%s", e.Clean, u.StationID, t.Content)
	} else if e.Clean != "" {
		if b, err := os.ReadFile(e.Clean); err == nil {
			fmt.Fprintf(w, "console (%s):\n%s", e.Clean, b)
		} else {
			fmt.Fprintf(w, "console transcript %s: %v\n", e.Clean, err)
		}
	}
	for _, a := range e.Assertions {
		fmt.Fprintf(w, "serial assertion (revision %d, via %s, received %s):\n%s", a.Revision, a.Via, a.ReceivedAt.Local().Format(time.DateTime), a.Text)
	}
}

// printImage shows the image a unit was flashed with, as its batch
// records the identity gate passed it.
func printImage(w io.Writer, im ledger.ImageIdentity) {
	if im.ModelDigest == "" && im.SeedLabel == "" && im.ModelSignKey == "" {
		fmt.Fprintln(w, "  image: identity not recorded (batch started before the image identity gate)")
	} else {
		label := im.SeedLabel
		if label == "" {
			label = "none (UC16/UC18)"
		}
		fmt.Fprintf(w, "  image: model digest %s, seed label %s, model sign key %s\n", im.ModelDigest, label, im.ModelSignKey)
	}
	if im.SHA256 != "" {
		fmt.Fprintf(w, "  image sha256 %s\n", im.SHA256)
	}
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}

func newExportCommand(stdout, stderr io.Writer) *cobra.Command {
	var src recordSource
	var format, station string
	var sc scope
	cmd := &cobra.Command{
		Use:   "export [--config FILE | --ledger URL [--station ID]] [--line ID] [--batch ID] [--since T] [--until T] [--verdict V] [--format csv|json]",
		Short: "Export units with their serial assertions (csv or json)",
		Long: `Export every unit (or a batch's) with its verdict, figures and serial
assertion, as CSV or as one JSON document. Exit 3 when --batch names no
recorded batch.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "csv" && format != "json" {
				return usageErrorf("--format %q: want csv or json", format)
			}
			_, f, err := sc.filters(time.Now())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if station != "" && !src.factory() {
				return usageErrorf("--station reads the factory ledger: give --ledger URL")
			}
			led, st, err := src.open(cmd, stderr)
			if err != nil {
				return err
			}
			defer led.Close()
			if src.factory() && sc.batch != 0 {
				return usageErrorf("--batch: batch numbers are each bench's own; on the factory ledger select with --line, --station, --since and --until")
			}
			if err := checkScope(ctx, led, st, sc.line, sc.batch); err != nil {
				return err
			}
			if station != "" {
				if err := checkStation(ctx, led, station); err != nil {
					return err
				}
			}
			f.StationID = station
			return export(ctx, led, f, format, stdout)
		},
	}
	src.register(cmd)
	cmd.Flags().StringVar(&station, "station", "", "with --ledger: only this bench's units")
	sc.register(cmd)
	cmd.Flags().StringVar(&format, "format", "csv", "csv or json")
	return cmd
}

type exportRow struct {
	Unit      int64   `json:"unit"`
	Batch     int64   `json:"batch"`
	Line      string  `json:"line"`
	Slot      string  `json:"slot"`
	HWSerial  string  `json:"hardware_serial"`
	Serial    string  `json:"serial"`
	Verdict   string  `json:"verdict"`
	Reason    string  `json:"reason"`
	Attempt   int     `json:"attempt"`
	Started   string  `json:"started"`
	Finished  string  `json:"finished"`
	FlashSecs float64 `json:"flash_seconds"`
	BootSecs  float64 `json:"boot_seconds"`
	DeviceKey string  `json:"device_key_sha3_384"`
	Revision  int     `json:"revision"`
	Assertion string  `json:"assertion"`
	// The chain head at export time of the chain the unit's assertion is
	// in (ledger.StationChainHead): on a bench the same in every row, on
	// the factory ledger its bench's.
	ChainRows int64  `json:"chain_rows"`
	ChainHead string `json:"chain_head"`
	// Station is the bench, UID and BatchUID the unit's and its batch's
	// ids in every ledger (unit and batch are the numbers of the ledger
	// exported): exports of several benches merge by them.
	Station  string `json:"station"`
	UID      string `json:"uid"`
	BatchUID string `json:"batch_uid"`
	// The image the unit was flashed with, as its batch records the
	// identity gate passed it (empty before the gate).
	ModelDigest  string `json:"model_digest"`
	SeedLabel    string `json:"seed_label"`
	ModelSignKey string `json:"model_sign_key"`
}

func export(ctx context.Context, led *ledger.Ledger, f ledger.UnitFilter, format string, w io.Writer) error {
	units, err := led.Units(ctx, f)
	if err != nil {
		return err
	}
	if len(units) == 0 && (!f.Since.IsZero() || !f.Until.IsZero() || f.State != "") {
		return noMatch("Widen --since/--until or drop --verdict; `flashstation status` shows what the record holds.",
			"no unit matches --since/--until/--verdict")
	}
	heads := map[string]ledger.ChainHead{}
	batches := map[int64]ledger.Batch{}
	var batchIDs []int64
	var rows []exportRow
	var printed []ledger.SerialAssertion
	for i := len(units) - 1; i >= 0; i-- {
		u := units[i]
		head, ok := heads[u.StationID]
		if !ok {
			if head, err = led.StationChainHead(ctx, u.StationID); err != nil {
				return err
			}
			heads[u.StationID] = head
		}
		b, ok := batches[u.BatchID]
		if !ok {
			if b, err = led.Batch(ctx, u.BatchID); err != nil {
				return err
			}
			batches[u.BatchID] = b
			batchIDs = append(batchIDs, b.ID)
		}
		r := exportRow{Station: u.StationID, UID: u.UID, BatchUID: b.UID,
			ModelDigest: b.ModelDigest, SeedLabel: b.SeedLabel, ModelSignKey: b.ModelSignKey, Unit: u.ID, Batch: u.BatchID, Line: u.LineID, Slot: u.SlotID, HWSerial: u.HWSerial, Serial: u.Serial,
			Verdict: u.State, Reason: u.Reason, Attempt: u.Attempt, Started: u.StartedAt.UTC().Format(time.RFC3339),
			FlashSecs: (u.FlashTime + u.VerifyTime).Seconds(), BootSecs: u.BootTime.Seconds(),
			ChainRows: head.Rows, ChainHead: head.Link}
		if !u.FinishedAt.IsZero() {
			r.Finished = u.FinishedAt.UTC().Format(time.RFC3339)
		}
		as, err := led.SerialAssertions(ctx, ledger.AssertionFilter{UnitID: u.ID})
		if err != nil {
			return err
		}
		printed = append(printed, as...)
		if len(as) > 0 {
			a := as[len(as)-1]
			r.DeviceKey, r.Revision, r.Assertion = a.DeviceKeyID, a.Revision, string(a.Text)
		}
		rows = append(rows, r)
	}
	if err := verifyPrinted(ctx, led, printed, ledger.VerifyBatches(batchIDs...)); err != nil {
		return err
	}
	if format == "json" {
		if rows == nil {
			rows = []exportRow{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	cw := csv.NewWriter(w)
	cw.Write([]string{"unit", "batch", "line", "slot", "hardware_serial", "serial", "verdict", "reason", "attempt", "started",
		"finished", "flash_seconds", "boot_seconds", "device_key_sha3_384", "revision", "assertion", "chain_rows", "chain_head",
		"station", "uid", "batch_uid", "model_digest", "seed_label", "model_sign_key"})
	for _, r := range rows {
		cw.Write([]string{strconv.FormatInt(r.Unit, 10), strconv.FormatInt(r.Batch, 10), r.Line, r.Slot, r.HWSerial, r.Serial,
			r.Verdict, r.Reason, strconv.Itoa(r.Attempt), r.Started, r.Finished, fmt.Sprintf("%.3f", r.FlashSecs),
			fmt.Sprintf("%.3f", r.BootSecs), r.DeviceKey, strconv.Itoa(r.Revision), r.Assertion,
			strconv.FormatInt(r.ChainRows, 10), r.ChainHead, r.Station, r.UID, r.BatchUID, r.ModelDigest, r.SeedLabel, r.ModelSignKey})
	}
	cw.Flush()
	return cw.Error()
}
