package main

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/logging"
	"github.com/flashstation/flashstation/tui"
)

func newSuperviseCommand(stdout, stderr io.Writer) *cobra.Command {
	var spec, line, station, since string
	cmd := &cobra.Command{
		Use:   "supervise --ledger URL [--line ID] [--station ID] [--since T]",
		Short: "The supervisors' live board of lines x benches (read-only)",
		Long: `A read-only board of the factory ledger, refreshed every 2 s: for each line
and each bench, the units, yield and passes per hour since --since (default:
today since midnight), the benches silent for more than a minute and the
serials or device keys two benches recorded. Select a cell with the arrows and
press enter for that bench's slots on that line (fail rates, suspect slots,
failures). It never writes. Exit 4 when the factory ledger cannot be reached
at start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if spec == "" {
				return usageErrorf("give the factory ledger with --ledger URL (or env:NAME, file:PATH)")
			}
			tty, ok := terminal(stdout)
			if !ok {
				return usageErrorf("supervise draws on a terminal; a script reads 'flashstation status --ledger URL --json'")
			}
			f := ledger.FactoryFilter{LineID: line, StationID: station}
			now := time.Now()
			y, mo, d := now.Date()
			f.Since = time.Date(y, mo, d, 0, 0, 0, 0, time.Local)
			if since != "" {
				var err error
				if f.Since, err = parseSince(since, now); err != nil {
					return usageErrorf("--since: %v", err)
				}
			}
			dsn, err := factoryDSN(spec, stderr)
			if err != nil {
				return err
			}
			return superviseOn(ctx, dsn, f, tty)
		},
	}
	cmd.Flags().StringVar(&spec, "ledger", "", ledgerFlagHelp)
	cmd.Flags().StringVar(&line, "line", "", "only this line")
	cmd.Flags().StringVar(&station, "station", "", "only this bench")
	cmd.Flags().StringVar(&since, "since", "", "units started since this time or duration ago (default: today)")
	return cmd
}

// runSupervise opens the board on the factory ledger at dsn, for today.
func runSupervise(ctx context.Context, dsn string, tty *os.File) error {
	if tty == nil {
		return errors.New("supervise draws on a terminal")
	}
	now := time.Now()
	y, mo, d := now.Date()
	return superviseOn(ctx, dsn, ledger.FactoryFilter{Since: time.Date(y, mo, d, 0, 0, 0, 0, time.Local)}, tty)
}

func superviseOn(ctx context.Context, dsn string, f ledger.FactoryFilter, tty *os.File) error {
	led, err := ledger.OpenFactoryReadOnly(ctx, dsn)
	var off ledger.ErrOffline
	switch {
	case errors.As(err, &off):
		return &exitError{code: exitOffline, reason: reasonOffline, err: err,
			hint: "Check that PostgreSQL runs and that the URL's host, port or socket, user and password are right."}
	case err != nil:
		return configError(err, "Start a bench of this version on the factory ledger once (it creates and migrates its tables).")
	}
	defer led.Close()
	log, _ := logging.New(io.Discard, "")
	m := tui.NewSupervise(ctx, tui.SuperviseOptions{Records: led, Where: led.Path(), Filter: f, Logger: log})
	_, err = tea.NewProgram(m, tea.WithContext(ctx), tea.WithOutput(tty)).Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil
	}
	return err
}
