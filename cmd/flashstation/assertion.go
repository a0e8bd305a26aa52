package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/serialvault"
)

func newAssertionCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "assertion",
		Short: "Work with assertion files",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var keyFiles []string
	cmd.AddCommand(&cobra.Command{
		Use:   "verify [--key FILE]... FILE...",
		Short: "Decode assertions and check their signatures",
		Long: `Decode every assertion in the files (single assertions or streams) and check
its signature. Keys given with --key (account-key assertions or encoded public
keys) are trusted; account-keys in the files that a trusted key signed become
trusted too, so a chain root -> account-key -> model verifies. A serial-request
is checked against its own device key. Exit 0 when every signature holds.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return assertionVerify(keyFiles, args, stdout)
		},
	})
	cmd.Commands()[0].Flags().StringArrayVar(&keyFiles, "key", nil, "trusted key file (repeatable)")
	return cmd
}

type inputAssertion struct {
	file string
	a    *serialvault.Assertion
}

func assertionVerify(keyFiles, files []string, out io.Writer) error {
	ring := serialvault.NewKeyRing()
	for _, f := range keyFiles {
		if err := ring.AddFile(f); err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("--key: %w", err)}
		}
	}
	var inputs []inputAssertion
	failed := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		as, err := serialvault.DecodeStream(data)
		for _, a := range as {
			inputs = append(inputs, inputAssertion{f, a})
		}
		if err != nil {
			fmt.Fprintf(out, "%s: FAIL: %v\n", f, err)
			failed++
		}
	}
	// Trust account-keys that trusted keys signed, until nothing changes.
	for changed := true; changed; {
		changed = false
		for _, in := range inputs {
			if in.a.Type() != "account-key" {
				continue
			}
			ak, err := serialvault.AsAccountKey(in.a)
			if err != nil {
				continue
			}
			if _, known := ring.Lookup(ak.PublicKey.ID()); known {
				continue
			}
			if _, err := ring.Verify(in.a); err == nil {
				ring.Add(serialvault.TrustedKey{Key: ak.PublicKey, AccountID: ak.AccountID, Name: ak.Name, Source: in.file})
				changed = true
			}
		}
	}
	for _, in := range inputs {
		desc, err := verifyOne(ring, in.a)
		if err != nil {
			fmt.Fprintf(out, "%s: %s: FAIL: %v\n", in.file, desc, err)
			failed++
			continue
		}
		fmt.Fprintf(out, "%s: %s: ok\n", in.file, desc)
	}
	if failed > 0 {
		return reported(exitVerdict, fmt.Errorf("%s failed", plural(failed, "assertion")))
	}
	return nil
}

// verifyOne checks an assertion's signature and typed headers and says what
// it is and who signed it.
func verifyOne(ring *serialvault.KeyRing, a *serialvault.Assertion) (string, error) {
	desc := a.String()
	if r := a.Revision(); r > 0 {
		desc += fmt.Sprintf(" (revision %d)", r)
	}
	var err error
	switch a.Type() {
	case "serial-request":
		var req *serialvault.SerialRequest
		if req, err = serialvault.AsSerialRequest(a); err == nil {
			desc = fmt.Sprintf("serial-request %s/%s serial %q", req.BrandID, req.Model, req.Serial)
			return desc + ", self-signed by device key " + short(req.DeviceKey.ID()), nil
		}
		return desc, err
	case "serial":
		_, err = serialvault.AsSerial(a)
	case "model":
		_, err = serialvault.AsModel(a)
	case "account-key":
		_, err = serialvault.AsAccountKey(a)
	}
	if err != nil {
		return desc, err
	}
	k, err := ring.Verify(a)
	if err != nil {
		return desc, err
	}
	signer := "key " + short(k.Key.ID())
	if k.AccountID != "" {
		signer += " of " + k.AccountID
	}
	return desc + ", signed by " + signer, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12] + "..."
	}
	return id
}

func newAssertionsCommand(stdout, stderr io.Writer) *cobra.Command {
	var src recordSource
	var lineID, serial, since, station string
	cmd := &cobra.Command{
		Use:   "assertions (--config FILE | --ledger URL [--station ID]) [--line ID] [--serial S] [--since T]",
		Short: "Print the recorded serial assertions as an assertion stream",
		Long: `Print the serial assertions the station recorded, exactly as received, as one
assertion stream (application/x.ubuntu.assertion) on stdout. --since takes a
time (2026-11-28, 2026-11-28T08:00:00Z) or a duration back from now (8h).
Exit 3 when no recorded assertion matches (an unknown line or serial).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := ledger.AssertionFilter{LineID: lineID, Serial: serial, StationID: station}
			if since != "" {
				var err error
				if f.Since, err = parseSince(since, time.Now()); err != nil {
					return usageErrorf("--since: %w", err)
				}
			}
			if station != "" && !src.factory() {
				return usageErrorf("--station reads the factory ledger: give --ledger URL")
			}
			led, st, err := src.open(cmd, stderr)
			if err != nil {
				return err
			}
			defer led.Close()
			return printAssertions(cmd.Context(), led, st, f, stdout, stderr)
		},
	}
	src.registerWith(cmd, "")
	cmd.Flags().StringVar(&station, "station", "", "with --ledger: only this bench's")
	cmd.Flags().StringVar(&lineID, "line", "", "only this line")
	cmd.Flags().StringVar(&serial, "serial", "", "only this serial number")
	cmd.Flags().StringVar(&since, "since", "", "only those received since this time or duration ago")
	return cmd
}

// parseSince reads a time, a date or a duration back from now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a time (2026-11-28T08:00:00Z, 2026-11-28) nor a duration (8h)", s)
}

// printAssertions writes the matching recorded assertions as one stream.
func printAssertions(ctx context.Context, led *ledger.Ledger, st *lines.Station, f ledger.AssertionFilter, stdout, stderr io.Writer) error {
	if f.LineID != "" {
		if err := checkLine(ctx, led, st, f.LineID); err != nil {
			return err
		}
	}
	as, err := led.SerialAssertions(ctx, f)
	if err != nil {
		return err
	}
	if len(as) == 0 {
		return noAssertions(f, led.Path())
	}
	if err := verifyPrinted(ctx, led, as); err != nil {
		return err
	}
	for i, a := range as {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		text := string(a.Text)
		if !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		fmt.Fprint(stdout, text)
	}
	fmt.Fprintf(stderr, "%s\n", plural(len(as), "serial assertion"))
	return nil
}

// noAssertions says no recorded serial assertion matches f (exit 3).
func noAssertions(f ledger.AssertionFilter, ledgerPath string) error {
	var what []string
	if f.LineID != "" {
		what = append(what, "line "+f.LineID)
	}
	if f.Serial != "" {
		what = append(what, "serial "+f.Serial)
	}
	if !f.Since.IsZero() {
		what = append(what, "received since "+f.Since.Local().Format(time.DateTime))
	}
	if len(what) == 0 {
		return noMatch("Serial assertions are recorded as boards register; run a batch first, or check --config.",
			"the ledger %s holds no serial assertion yet", ledgerPath)
	}
	hint := "Widen the selection: leave out --line, --serial or --since."
	if f.Serial != "" {
		hint = "Check the serial; 'flashstation logs SERIAL' finds a board by its hardware serial too."
	}
	return noMatch(hint, "no serial assertion in the ledger %s matches %s", ledgerPath, strings.Join(what, ", "))
}
