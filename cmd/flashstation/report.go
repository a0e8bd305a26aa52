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

func newStatusCommand(stdout, stderr io.Writer) *cobra.Command {
	var config, line string
	var batch int64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--config FILE] [--line ID] [--batch ID] [--json]",
		Short: "Batch status for supervisors: counts, yield, throughput, failure pareto",
		Long: `Supervisor figures of the station, a line or a batch: counts, yield,
first-pass yield, units/hour, medians, failure pareto and suspect slots.
Exit 3 when --line or --batch names nothing the record holds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := loadStation(config, stderr)
			if err != nil {
				return err
			}
			led, err := openReadLedger(ctx, st)
			if err != nil {
				return err
			}
			defer led.Close()
			if err := checkScope(ctx, led, st, line, batch); err != nil {
				return err
			}
			s, err := led.Stats(ctx, ledger.StatsFilter{LineID: line, BatchID: batch})
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			printStats(stdout, st.ID, line, batch, s)
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", defaultConfig(), "station file")
	cmd.Flags().StringVar(&line, "line", "", "only this line")
	cmd.Flags().Int64Var(&batch, "batch", 0, "only this batch")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document on stdout")
	return cmd
}

func pct(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }

func printStats(w io.Writer, station, line string, batch int64, s ledger.Stats) {
	scope := "station " + station
	if line != "" {
		scope += ", line " + line
	}
	if batch != 0 {
		scope += fmt.Sprintf(", batch %d", batch)
	}
	fmt.Fprintln(w, scope)
	fmt.Fprintf(w, "  planned %d   passed %d   failed %d   in progress %d   interrupted %d   boards %d\n",
		s.Planned, s.Passed, s.Failed, s.InProgress, s.Interrupted, s.Boards)
	fmt.Fprintf(w, "  yield %s   first-pass yield %s   %.1f units/hour\n", pct(s.Yield), pct(s.FirstPassYield), s.UnitsPerHour)
	fmt.Fprintf(w, "  median flash (write + read-back) %.1fs   median boot %.1fs\n", s.MedianFlashSecs, s.MedianBootSecs)
	if s.Duplicates > 0 || s.Unmatched > 0 {
		fmt.Fprintf(w, "  serials: %d duplicates, %d unmatched\n", s.Duplicates, s.Unmatched)
	}
	if len(s.Pareto) > 0 {
		fmt.Fprintln(w, "failures:")
		for _, r := range s.Pareto {
			fmt.Fprintf(w, "  %4d  %-22s %s\n", r.Count, r.Reason, lines.ReasonFor(r.Reason).What)
		}
	}
	var suspects []string
	for _, sl := range s.Slots {
		if sl.Suspect {
			suspects = append(suspects, fmt.Sprintf("%s (%d of %d failed)", sl.Slot, sl.Failed, sl.Units))
		}
	}
	if len(suspects) > 0 {
		fmt.Fprintf(w, "slots failing more than the others (check their cables, hub ports, consoles): %s\n", strings.Join(suspects, ", "))
	}
}

func newLogsCommand(stdout, stderr io.Writer) *cobra.Command {
	var config, bundle string
	cmd := &cobra.Command{
		Use:   "logs SERIAL [--config FILE] [--bundle OUT.tar.gz]",
		Short: "A unit's evidence for QA: timeline, flash figures, console transcript, serial assertion",
		Long: `Show what the station recorded of a board, by hardware serial or by the
serial in its assertion: every attempt, its timeline, its flash figures, the
clean console transcript and the serial assertion. --bundle writes the latest
attempt as a tar.gz with unit.json, console.log, console.raw, serial.assertion
and flash.json. Exit 3 when no unit has that serial.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := loadStation(config, stderr)
			if err != nil {
				return err
			}
			led, err := openReadLedger(ctx, st)
			if err != nil {
				return err
			}
			defer led.Close()
			ev, err := gatherEvidence(ctx, led, args[0])
			if err != nil {
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
	cmd.Flags().StringVar(&config, "config", defaultConfig(), "station file")
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
	if e.Clean != "" {
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
	var config, format string
	var batch int64
	cmd := &cobra.Command{
		Use:   "export [--config FILE] [--batch ID] [--format csv|json]",
		Short: "Export units with their serial assertions (csv or json)",
		Long: `Export every unit (or a batch's) with its verdict, figures and serial
assertion, as CSV or as one JSON document. Exit 3 when --batch names no
recorded batch.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "csv" && format != "json" {
				return usageErrorf("--format %q: want csv or json", format)
			}
			ctx := cmd.Context()
			st, err := loadStation(config, stderr)
			if err != nil {
				return err
			}
			led, err := openReadLedger(ctx, st)
			if err != nil {
				return err
			}
			defer led.Close()
			if err := checkScope(ctx, led, st, "", batch); err != nil {
				return err
			}
			return export(ctx, led, batch, format, stdout)
		},
	}
	cmd.Flags().StringVar(&config, "config", defaultConfig(), "station file")
	cmd.Flags().Int64Var(&batch, "batch", 0, "only this batch")
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
}

func export(ctx context.Context, led *ledger.Ledger, batch int64, format string, w io.Writer) error {
	units, err := led.Units(ctx, ledger.UnitFilter{BatchID: batch})
	if err != nil {
		return err
	}
	var rows []exportRow
	for i := len(units) - 1; i >= 0; i-- {
		u := units[i]
		r := exportRow{Unit: u.ID, Batch: u.BatchID, Line: u.LineID, Slot: u.SlotID, HWSerial: u.HWSerial, Serial: u.Serial,
			Verdict: u.State, Reason: u.Reason, Attempt: u.Attempt, Started: u.StartedAt.UTC().Format(time.RFC3339),
			FlashSecs: (u.FlashTime + u.VerifyTime).Seconds(), BootSecs: u.BootTime.Seconds()}
		if !u.FinishedAt.IsZero() {
			r.Finished = u.FinishedAt.UTC().Format(time.RFC3339)
		}
		as, err := led.SerialAssertions(ctx, ledger.AssertionFilter{UnitID: u.ID})
		if err != nil {
			return err
		}
		if len(as) > 0 {
			a := as[len(as)-1]
			r.DeviceKey, r.Revision, r.Assertion = a.DeviceKeyID, a.Revision, string(a.Text)
		}
		rows = append(rows, r)
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
		"finished", "flash_seconds", "boot_seconds", "device_key_sha3_384", "revision", "assertion"})
	for _, r := range rows {
		cw.Write([]string{strconv.FormatInt(r.Unit, 10), strconv.FormatInt(r.Batch, 10), r.Line, r.Slot, r.HWSerial, r.Serial,
			r.Verdict, r.Reason, strconv.Itoa(r.Attempt), r.Started, r.Finished, fmt.Sprintf("%.3f", r.FlashSecs),
			fmt.Sprintf("%.3f", r.BootSecs), r.DeviceKey, strconv.Itoa(r.Revision), r.Assertion})
	}
	cw.Flush()
	return cw.Error()
}
