package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
)

func newReconcileCommand(stdout, stderr io.Writer) *cobra.Command {
	var config, lineID, since, spec string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "reconcile [--config FILE] [--ledger URL] [--line ID] [--since T] [--json]",
		Short: "Compare the ledger with the vaults' signing logs",
		Long: `Compare, for each line with a vault signing-log configured, the serial
assertions in the ledger with the rows of the vault's signing log: every
serial the vault signed for a device key that passed through this station, or
for a serial one of the line's boards was expected to propose, must be in the
ledger; every assertion in the ledger must be in the vault's log with the same
device key and revision. The vault answers only its newest 10000 rows: what is
older cannot be proved, and the report says how much. With --ledger the vault
is compared with the factory ledger, which holds every bench of the line (a
line's vault signs for all of them). Exit 1 when they disagree; exit 4 when
the factory ledger cannot be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := loadStation(config, stderr)
			if err != nil {
				return err
			}
			var from time.Time
			if since != "" {
				if from, err = parseSince(since, time.Now()); err != nil {
					return usageErrorf("--since: %v", err)
				}
			}
			var todo []*lines.Line
			for i := range st.Lines {
				l := &st.Lines[i]
				if lineID != "" && l.ID != lineID {
					continue
				}
				if l.Vault.SigningLog == nil {
					if lineID != "" {
						return usageErrorf("line %s has no vault.signing-log: nothing to reconcile with", l.ID)
					}
					continue
				}
				todo = append(todo, l)
			}
			if lineID != "" && len(todo) == 0 {
				if _, err := stationLine(st, lineID); err != nil {
					return err
				}
			}
			if len(todo) == 0 {
				return usageErrorf("no line of %s has a vault.signing-log to reconcile with", st.Path)
			}
			var led *ledger.Ledger
			if spec != "" {
				// The factory ledger holds every bench of the line: what the
				// line's vault signed is in it whichever bench asked.
				led, err = openFactoryRead(ctx, spec, stderr)
			} else {
				led, err = openReadLedger(ctx, st)
			}
			if err != nil {
				return err
			}
			defer led.Close()
			var out []lines.Reconciliation
			for _, l := range todo {
				r, err := reconcileLine(ctx, st, l, led, from)
				if err != nil {
					return err
				}
				out = append(out, r)
			}
			bad := 0
			for _, r := range out {
				if !r.OK() {
					bad++
				}
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					Lines []lines.Reconciliation `json:"lines"`
				}{out}); err != nil {
					return err
				}
			} else {
				for _, r := range out {
					printReconciliation(stdout, r)
				}
			}
			if bad > 0 {
				return reported(exitVerdict, fmt.Errorf("reconcile: the ledger and the vault disagree on %s", plural(bad, "line")))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", defaultConfig(), "station file")
	cmd.Flags().StringVar(&spec, "ledger", "", ledgerFlagHelp)
	cmd.Flags().StringVar(&lineID, "line", "", "only this line")
	cmd.Flags().StringVar(&since, "since", "", "only what was signed or recorded since (e.g. 24h or 2026-12-01)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document on stdout")
	return cmd
}

// reconcileLine reads a line's signing log and ledger and compares them.
func reconcileLine(ctx context.Context, st *lines.Station, l *lines.Line, led *ledger.Ledger, since time.Time) (lines.Reconciliation, error) {
	m, err := l.LoadModel()
	if err != nil {
		return lines.Reconciliation{}, err
	}
	client, err := l.VaultClient(2, zerolog.Nop())
	if err != nil {
		return lines.Reconciliation{}, err
	}
	key, err := l.Vault.SigningLog.Key.Resolve()
	if err != nil {
		return lines.Reconciliation{}, fmt.Errorf("line %s: signing-log key (%s): %w", l.ID, l.Vault.SigningLog.Key, err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return lines.ReconcileLine(cctx, l, st.ID, m.BrandID, m.Model, client, key, led, since)
}

func printReconciliation(w io.Writer, r lines.Reconciliation) {
	verdict := "agree"
	if !r.OK() {
		verdict = fmt.Sprintf("DISAGREE: %s", plural(len(r.Differences), "difference"))
	}
	fmt.Fprintf(w, "line %s: ledger %s, vault %s, %d matched: %s\n", r.Line, plural(r.LedgerRows, "assertion"), plural(r.VaultRows, "row"), r.Matched, verdict)
	for _, d := range r.Differences {
		fmt.Fprintf(w, "  %-13s serial %s revision %d device key %.12s... at %s: %s\n", d.Kind, d.Serial, d.Revision, d.DeviceKeyID,
			d.At.Local().Format("2006-01-02 15:04:05"), d.Detail)
	}
	if r.Pending > 0 {
		fmt.Fprintf(w, "  %s signed for boards still in work, not recorded yet\n", plural(r.Pending, "serial"))
	}
	if r.Truncated {
		fmt.Fprintf(w, "  the vault answered only its newest rows (from %s): %s older than that cannot be proved\n",
			r.WindowFrom.Local().Format("2006-01-02 15:04:05"), plural(r.NotProvable, "ledger assertion"))
	}
}
