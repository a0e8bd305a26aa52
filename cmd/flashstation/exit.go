package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"
)

// Exit codes of the command-line contract. These are the only codes the
// program exits with; README's exit-codes paragraph lists them (a test
// checks).
const (
	exitOK      = 0
	exitVerdict = 1 // a verdict failed: flash, verify, boot or capture
	exitUsage   = 2 // usage or configuration error
	exitNoMatch = 3 // nothing matches: no such batch, line or serial in the record
	exitOffline = 4 // the factory ledger cannot be reached
)

// exitCodes says what each exit code means, for --help and the README test.
var exitCodes = []struct {
	code    int
	meaning string
}{
	{exitOK, "success"},
	{exitVerdict, "a verdict failed (flash, verify, boot or capture)"},
	{exitUsage, "usage or configuration error"},
	{exitNoMatch, "nothing matches (no such batch, line or serial in the record)"},
	{exitOffline, "the factory ledger cannot be reached"},
}

// exitCodesHelp is the exit-codes sentence of --help.
func exitCodesHelp() string {
	parts := make([]string, len(exitCodes))
	for i, c := range exitCodes {
		parts[i] = fmt.Sprintf("%d %s", c.code, c.meaning)
	}
	return "Exit codes: " + strings.Join(parts, ", ") + "."
}

// Reasons of the --json error document when no failure reason code is
// more precise.
const (
	reasonFailed  = "failed"         // exit 1
	reasonUsage   = "usage"          // exit 2: the command line
	reasonConfig  = "config"         // exit 2: the station file, its secrets, paths
	reasonNoMatch = "no-match"       // exit 3
	reasonOffline = "ledger-offline" // exit 4
)

// exitError carries an exit code, a reason word and what to do. Its
// message has already been printed when quiet is set (a command that
// reports its own problems).
type exitError struct {
	code   int
	reason string // for --json; defaults from the code
	err    error
	hint   string // what to do about it: a sentence, printed after the message
	quiet  bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// reasonWord is the error's reason for --json.
func (e *exitError) reasonWord() string {
	if e.reason != "" {
		return e.reason
	}
	switch e.code {
	case exitUsage:
		return reasonUsage
	case exitNoMatch:
		return reasonNoMatch
	}
	return reasonFailed
}

// usageErrorf is a usage error of the command line (exit 2).
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, reason: reasonUsage, err: fmt.Errorf(format, args...)}
}

// usageHint is a usage error (exit 2) with what to do.
func usageHint(err error, hint string) error {
	return &exitError{code: exitUsage, reason: reasonUsage, err: err, hint: hint}
}

// configError is a configuration error (exit 2): the station file, a
// secret, a path it names. hint says what to do.
func configError(err error, hint string) error {
	return &exitError{code: exitUsage, reason: reasonConfig, err: err, hint: hint}
}

// noMatch says a lookup matched nothing in the record (exit 3).
func noMatch(hint, format string, args ...any) error {
	return &exitError{code: exitNoMatch, reason: reasonNoMatch, err: fmt.Errorf(format, args...), hint: hint}
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

// errorJSON is the one document a --json command prints on stdout when it
// fails before it printed its own.
type errorJSON struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// printError reports a failed command (err, whose exit error is ee): the
// message and what to do on stderr (unless the command already did), and,
// when the command was asked for JSON and printed nothing on stdout, the
// error as its one document.
func printError(err error, ee *exitError, asJSON bool, stdout *trackedWriter, stderr io.Writer) {
	if !ee.quiet {
		fmt.Fprintf(stderr, "flashstation: %v\n", err)
		if ee.hint != "" {
			fmt.Fprintln(stderr, ee.hint)
		}
	}
	if !asJSON || stdout.written() {
		return
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(errorJSON{errorBody{Code: ee.code, Reason: ee.reasonWord(), Message: err.Error(), Hint: ee.hint}})
}

// wantsJSON reports whether the command line asked for a JSON document:
// --json, or export's --format json. When cobra refused the line before
// parsing it, the arguments themselves say.
func wantsJSON(cmd *cobra.Command, args []string) bool {
	if cmd != nil {
		if f := cmd.Flags().Lookup("json"); f != nil && f.Changed {
			return f.Value.String() == "true"
		}
		if f := cmd.Flags().Lookup("format"); f != nil && f.Changed {
			return f.Value.String() == "json"
		}
	}
	for i, a := range args {
		switch {
		case a == "--":
			return false
		case a == "--json" || a == "--json=true" || a == "--format=json":
			return true
		case a == "--format" && i+1 < len(args) && args[i+1] == "json":
			return true
		}
	}
	return false
}

// trackedWriter remembers whether anything was written through it, so a
// command that printed its own document gets no second one.
type trackedWriter struct {
	w io.Writer
	n atomic.Int64
}

func (t *trackedWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.n.Add(int64(n))
	return n, err
}

func (t *trackedWriter) written() bool { return t.n.Load() > 0 }

// Unwrap returns the writer underneath (a terminal, for the TUI).
func (t *trackedWriter) Unwrap() io.Writer { return t.w }
