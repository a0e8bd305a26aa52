package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/serialvault"
)

func newLedgerCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Check the station's ledger",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var src recordSource
	var asJSON bool
	verify := &cobra.Command{
		Use:   "verify (--config FILE | --ledger URL [--config FILE]) [--json]",
		Short: "Check that the ledger is the record the station wrote",
		Long: `Check the station's ledger for tampering: every guarding trigger is in place
as the station wrote it, every serial assertion's text matches its SHA-256,
the assertions' hash chain holds without a gap, each assertion's unit exists
and has its serial, and every assertion is signed by a brand key of the
station's lines. Prints the chain head (rows and last link): keep it, a later
verify of a shorter chain shows rows removed from its end.
With --ledger, the factory ledger: its guards, and each bench's chain as that
bench wrote it; the signatures are checked with the brand keys of the lines of
--config when it is given (a factory's lines share their brand).
Exit 1 when verification fails, naming the first bad row; exit 4 when the
factory ledger cannot be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			led, st, err := src.open(cmd, stderr)
			if err != nil {
				return err
			}
			defer led.Close()
			var opts []ledger.VerifyOption
			if len(st.Lines) > 0 {
				check, err := brandKeyVerifier(st)
				if err != nil {
					return err
				}
				opts = append(opts, ledger.VerifySignatures(check))
			} else {
				fmt.Fprintln(stderr, "no station file: the signatures are not checked (give --config with the lines' brand keys)")
			}
			rep, err := led.Verify(ctx, opts...)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(verifyJSON{Ledger: led.Path(), Report: rep}); err != nil {
					return err
				}
			} else {
				printVerify(stdout, led.Path(), rep)
			}
			if !rep.OK {
				return tamperedError(rep)
			}
			return nil
		},
	}
	src.register(verify)
	verify.Flags().BoolVar(&asJSON, "json", false, "print one JSON document on stdout")
	cmd.AddCommand(verify)
	return cmd
}

// verifyJSON is ledger verify's --json document.
type verifyJSON struct {
	Ledger string `json:"ledger"`
	ledger.Report
}

func printVerify(w io.Writer, path string, rep ledger.Report) {
	if rep.OK {
		fmt.Fprintf(w, "ledger %s verified: %s, %d triggers in place, %s checked, %s intact\n", path,
			plural(int(rep.Head.Rows), "serial assertion"), rep.Triggers, plural(rep.Signatures, "signature"), plural(rep.Batches, "batch seal"))
	} else {
		fmt.Fprintf(w, "ledger %s FAILS verification: %s\n", path, plural(len(rep.Problems), "problem"))
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	if rep.Chains == nil {
		fmt.Fprintf(w, "chain head: %d rows, link %s\n", rep.Head.Rows, rep.Head.Link)
		return
	}
	// A factory ledger: each bench's chain.
	stations := slices.Sorted(maps.Keys(rep.Chains))
	for _, st := range stations {
		h := rep.Chains[st]
		fmt.Fprintf(w, "chain head of station %s: %d rows, link %s\n", st, h.Rows, h.Link)
	}
}

// tamperedError is the exit-1 error of a ledger that fails verification.
func tamperedError(rep ledger.Report) error {
	return &exitError{code: exitVerdict, reason: reasonFailed, err: rep.Err(),
		hint: "The ledger was changed outside flashstation: keep the file as it is for the investigation, " +
			"and compare with the chain head of an earlier export or 'flashstation ledger verify'."}
}

// brandKeyVerifier checks a recorded assertion's signature against the
// brand keys of every line of the station.
func brandKeyVerifier(st *lines.Station) (func(text []byte) error, error) {
	ring := serialvault.NewKeyRing()
	for _, l := range st.Lines {
		r, err := l.LoadKeyRing()
		if err != nil {
			return nil, configError(err, fmt.Sprintf("Check the line's brand-keys in %s.", st.Path))
		}
		for _, id := range r.IDs() {
			k, _ := r.Lookup(id)
			ring.Add(k)
		}
	}
	return func(text []byte) error {
		a, err := serialvault.Decode(text)
		if err != nil {
			return err
		}
		_, err = ring.Verify(a)
		return err
	}, nil
}

// verifyPrinted refuses (exit 1) to print serial assertions that fail
// the ledger's checks (assertions, export, logs): they would not be the
// station's record. It checks the triggers, the rows printed and the
// chain around them, and that no row is missing, in time that does not
// grow with the ledger; the signatures and the whole chain are
// 'flashstation ledger verify's.
func verifyPrinted(ctx context.Context, led *ledger.Ledger, as []ledger.SerialAssertion, opts ...ledger.VerifyOption) error {
	ids := make([]int64, len(as))
	for i, a := range as {
		ids[i] = a.ID
	}
	rep, err := led.VerifyAssertions(ctx, ids, opts...)
	if err != nil {
		return err
	}
	if !rep.OK {
		return tamperedError(rep)
	}
	return nil
}
