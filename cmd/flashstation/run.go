package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// run is the whole program: it parses args, runs the command and returns
// an error whose exit code says how it went. Errors are printed to stderr
// here, once.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	entered := false
	out := &trackedWriter{w: stdout}
	root := newRootCommand(out, stderr, &entered)
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return nil
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		code := exitVerdict
		if !entered {
			// cobra refused the command line before any command ran.
			code = exitUsage
		}
		ee = &exitError{code: code, err: err}
		err = ee
	}
	if ee.code == exitUsage && !entered && ee.hint == "" && cmd != nil {
		ee.hint = fmt.Sprintf("Run '%s --help' for usage.", cmd.CommandPath())
		if cmd != root {
			ee.hint = fmt.Sprintf("Usage: %s\n%s", cmd.UseLine(), ee.hint)
		}
	}
	printError(err, ee, wantsJSON(cmd, args), out, stderr)
	return err
}

// newRootCommand builds the command tree. Only commands that work are
// registered: --help never advertises one that does not.
func newRootCommand(stdout, stderr io.Writer, entered *bool) *cobra.Command {
	var rootRun runFlags
	root := &cobra.Command{
		Use:   "flashstation [--config FILE]",
		Short: "Flash, boot and register Ubuntu Core boards on a factory bench",
		Long: `flashstation runs the flashing bench of an Ubuntu Core device factory: it flashes
a production line's signed image onto many boards in parallel, watches each
board's first boot over its serial console, and records the serial assertion
the line's Serial Vault signs for it.

With no command it opens the bench TUI on the configured bench (--config,
default $FLASHSTATION_CONFIG or /etc/flashstation/station.yaml); see 'run'.
Try it on a simulated bench with 'flashstation demo'.

` + exitCodesHelp(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE:          func(cmd *cobra.Command, _ []string) error { return rootRun.run(cmd.Context(), stdout, stderr) },
	}
	rootRun.register(root.Flags(), false)
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	// Every command marks entry so run can tell a refused command line
	// (exit 2) from a command that failed (exit 1).
	root.PersistentPreRun = func(*cobra.Command, []string) { *entered = true }

	root.AddCommand(
		newConfigCommand(stdout, stderr),
		newVaultCommand(stdout, stderr),
		newAssertionCommand(stdout, stderr),
		newAssertionsCommand(stdout, stderr),
		newFlashCommand(stdout, stderr),
		newDevicesCommand(stdout, stderr),
		newWatchCommand(stdout, stderr),
		newSimCommand(stdout, stderr),
		newRunCommand(stdout, stderr),
		newDemoCommand(stdout, stderr),
		newStatusCommand(stdout, stderr),
		newSuperviseCommand(stdout, stderr),
		newLogsCommand(stdout, stderr),
		newExportCommand(stdout, stderr),
		newReconcileCommand(stdout, stderr),
		newLedgerCommand(stdout, stderr),
		newImageCommand(stdout, stderr),
	)
	return root
}
