package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Exit codes of the command-line contract.
const (
	exitOK      = 0
	exitVerdict = 1 // a verdict failed: flash, verify, boot or capture
	exitUsage   = 2 // usage or configuration error
)

// exitError carries an exit code. Its message has already been printed
// when quiet is set (a command that reports its own problems).
type exitError struct {
	code  int
	err   error
	quiet bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is a usage or configuration error (exit 2).
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// reported wraps an error whose details the command already printed.
func reported(code int, err error) error {
	return &exitError{code: code, err: err, quiet: true}
}

// exitCode maps run's error to the process exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitVerdict
}

// run is the whole program: it parses args, runs the command and returns
// an error whose exit code says how it went. Errors are printed to stderr
// here, once.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	entered := false
	root := newRootCommand(stdout, stderr, &entered)
	root.SetArgs(args)
	root.SetOut(stdout)
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
	if !ee.quiet {
		fmt.Fprintf(stderr, "flashstation: %v\n", ee.err)
		if ee.code == exitUsage && !entered {
			if cmd != nil && cmd != root {
				fmt.Fprintf(stderr, "Usage: %s\n", cmd.UseLine())
			}
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
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

Exit codes: 0 success, 1 a verdict failed (flash, verify, boot or capture),
2 usage or configuration error.`,
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
		newLogsCommand(stdout, stderr),
		newExportCommand(stdout, stderr),
	)
	return root
}
