package main

import (
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

const readmePath = "../../README.md"

// readmeSection returns the lines of README's "## title" section.
func readmeSection(t *testing.T, readme, title string) []string {
	t.Helper()
	var out []string
	in := false
	for _, l := range strings.Split(readme, "\n") {
		if strings.HasPrefix(l, "## ") {
			in = l == "## "+title
			continue
		}
		if in {
			out = append(out, l)
		}
	}
	if out == nil {
		t.Fatalf("README has no %q section", "## "+title)
	}
	return out
}

// tableCommands returns the first cell of each row of the section's first
// markdown table, without its backquotes.
func tableCommands(section []string) []string {
	var rows []string
	inTable := false
	for _, l := range section {
		if !strings.HasPrefix(l, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		cells := splitRow(l)
		if len(cells) == 0 || strings.HasPrefix(cells[0], "---") || cells[0] == "command" {
			continue
		}
		rows = append(rows, strings.Trim(cells[0], "`"))
	}
	return rows
}

// splitRow splits a markdown table row on unescaped pipes.
func splitRow(l string) []string {
	var cells []string
	var cur strings.Builder
	for i := 1; i < len(l); i++ {
		switch {
		case l[i] == '\\' && i+1 < len(l) && l[i+1] == '|':
			cur.WriteByte('|')
			i++
		case l[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(l[i])
		}
	}
	return cells
}

var (
	commandWord = regexp.MustCompile(`^[a-z][a-z-]*$`)
	flagName    = regexp.MustCompile(`--[a-z][a-z0-9-]*`)
)

// resolveRow walks a row's synopsis ("flashstation vault check --config
// FILE --line ID") down the command tree. It returns the command and the
// word that names no subcommand, if any.
func resolveRow(root *cobra.Command, synopsis string) (*cobra.Command, string) {
	words := strings.Fields(synopsis)
	if len(words) == 0 || words[0] != "flashstation" {
		return nil, synopsis
	}
	cmd := root
	for _, w := range words[1:] {
		if !commandWord.MatchString(w) {
			break
		}
		var next *cobra.Command
		for _, c := range cmd.Commands() {
			if c.Name() == w {
				next = c
			}
		}
		if next == nil {
			return cmd, w
		}
		cmd = next
	}
	return cmd, ""
}

// registered lists every command a user can run, by path below the root
// ("" for the root itself), skipping cobra's own help.
func registered(root *cobra.Command) []string {
	var out []string
	var walk func(c *cobra.Command, path string)
	walk = func(c *cobra.Command, path string) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		out = append(out, path)
		for _, sub := range c.Commands() {
			walk(sub, strings.TrimSpace(path+" "+sub.Name()))
		}
	}
	walk(root, "")
	return out
}

// TestREADMECommandTable keeps README's command table and the registered
// commands the same: every row names a registered command and only its
// flags, and every registered command (a group through its subcommands)
// has a row.
func TestREADMECommandTable(t *testing.T) {
	readme := string(mustRead(t, readmePath))
	rows := tableCommands(readmeSection(t, readme, "Commands"))
	if len(rows) < 10 {
		t.Fatalf("README's command table has %d rows: the parser lost it", len(rows))
	}
	entered := false
	root := newRootCommand(io.Discard, io.Discard, &entered)
	inTable := map[string]bool{}
	for _, row := range rows {
		cmd, unknown := resolveRow(root, row)
		if cmd == nil || unknown != "" {
			t.Errorf("README row %q: %q is not a registered command", row, unknown)
			continue
		}
		path := strings.TrimSpace(strings.TrimPrefix(cmd.CommandPath(), root.Name()))
		inTable[path] = true
		for _, f := range flagName.FindAllString(row, -1) {
			if cmd.Flags().Lookup(strings.TrimPrefix(f, "--")) == nil {
				t.Errorf("README row %q: flashstation %s has no flag %s", row, path, f)
			}
		}
	}
	for _, path := range registered(root) {
		covered := inTable[path]
		for p := range inTable {
			covered = covered || strings.HasPrefix(p, path+" ") // a group through its subcommands
		}
		if !covered {
			t.Errorf("command %q is registered but README's command table has no row for it", strings.TrimSpace("flashstation "+path))
		}
	}
}

// TestREADMEExitCodes keeps README's exit-codes paragraph and the codes
// the program uses (exit.go) the same, and lists the reasons of the --json
// error document.
func TestREADMEExitCodes(t *testing.T) {
	readme := string(mustRead(t, readmePath))
	var para []string
	for _, l := range readmeSection(t, readme, "Commands") {
		if strings.HasPrefix(l, "Exit codes:") || len(para) > 0 && strings.TrimSpace(l) != "" {
			para = append(para, l)
		} else if len(para) > 0 {
			break
		}
	}
	if para == nil {
		t.Fatal(`README's Commands section has no "Exit codes:" paragraph`)
	}
	text := strings.Join(para, " ")
	var documented []int
	for _, m := range regexp.MustCompile("`([0-9]+)`").FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[1])
		documented = append(documented, n)
	}
	var used []int
	for _, c := range exitCodes {
		used = append(used, c.code)
	}
	if !slices.Equal(documented, used) {
		t.Errorf("README's exit codes %v, the program's %v:\n%s", documented, used, text)
	}
	for _, reason := range []string{reasonFailed, reasonUsage, reasonConfig, reasonNoMatch, reasonOffline} {
		if !strings.Contains(readme, "`"+reason+"`") {
			t.Errorf("README does not document the --json error reason %q", reason)
		}
	}
	if help := exitCodesHelp(); !strings.Contains(help, "3 nothing matches") || !strings.Contains(help, "2 usage") {
		t.Errorf("--help exit codes: %s", help)
	}
}

func TestResolveRow(t *testing.T) {
	entered := false
	root := newRootCommand(io.Discard, io.Discard, &entered)
	for _, tc := range []struct {
		row, path, unknown string
	}{
		{"flashstation [--config FILE]", "flashstation", ""},
		{"flashstation vault check --config FILE --line ID", "flashstation vault check", ""},
		{"flashstation logs SERIAL [--config FILE]", "flashstation logs", ""},
		{"flashstation ledger verify [--json]", "flashstation ledger verify", ""},
		{"flashstation frob verify [--json]", "flashstation", "frob"},
		{"flashstation vault frob", "flashstation vault", "frob"},
	} {
		cmd, unknown := resolveRow(root, tc.row)
		if cmd == nil || cmd.CommandPath() != tc.path || unknown != tc.unknown {
			t.Errorf("resolveRow(%q) = %v, %q; want %s, %q", tc.row, cmd, unknown, tc.path, tc.unknown)
		}
	}
	if rows := tableCommands([]string{"text", "| command | what |", "|---|---|", "| `flashstation a \\| b` | x |", "", "| other | table |"}); !slices.Equal(rows, []string{"flashstation a | b"}) {
		t.Errorf("tableCommands: %q", rows)
	}
}
