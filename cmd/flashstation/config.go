package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/usb"
	"github.com/flashstation/flashstation/usb/libusb"
)

func newConfigCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check station configuration files",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a station file and print every problem with file:line:column",
		Long: `Validate a station file. Every problem is printed on stderr as
FILE:LINE:COLUMN: FIELD: MESSAGE (exit 2); warnings do not fail the check.
A valid file prints a one-line summary on stdout (exit 0).`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return configCheck(args[0], stdout, stderr)
		},
	})
	return cmd
}

func configCheck(path string, stdout, stderr io.Writer) error {
	st, problems, err := lines.Load(path)
	if err != nil {
		return configError(err, "Check the path; 'flashstation demo --data DIR' writes a working station file to DIR.")
	}
	for _, p := range problems {
		fmt.Fprintln(stderr, p)
	}
	if errs := problems.Errors(); len(errs) > 0 {
		fmt.Fprintf(stderr, "%s: %s\n", path, countProblems(problems))
		return &exitError{code: exitUsage, reason: reasonConfig, quiet: true, err: fmt.Errorf("%s: invalid configuration", path)}
	}
	lib := libusb.New()
	defer lib.Close()
	hubErrs, notHere := checkHubsHere(context.Background(), st, usbSystem(), lib)
	for _, h := range notHere {
		fmt.Fprintf(stderr, "%s: warning: hub %s is not connected to this PC: its power switching is not checked (run config check on the bench PC)\n", path, h)
	}
	for _, e := range hubErrs {
		fmt.Fprintf(stderr, "%s: %v\n", path, e)
	}
	if len(hubErrs) > 0 {
		return &exitError{code: exitUsage, reason: reasonConfig, quiet: true, err: fmt.Errorf("%s: the bench's hubs cannot power-cycle its boards", path)}
	}
	fmt.Fprintln(stdout, summary(st, problems))
	return nil
}

// checkHubsHere checks the power switching of the hub-power slots' hubs
// that this PC has (lines.CheckHubPower); the hubs it does not have are
// returned, not checked.
func checkHubsHere(ctx context.Context, st *lines.Station, sys usb.Sysfs, r usb.HubReader) (problems []error, notHere []string) {
	here := hereOnly{sys: sys, r: r, missing: map[string]bool{}}
	for _, err := range lines.CheckHubPower(ctx, st, here, sys) {
		if !errors.Is(err, errHubNotHere) {
			problems = append(problems, err)
		}
	}
	for h := range here.missing {
		notHere = append(notHere, h)
	}
	sort.Strings(notHere)
	return problems, notHere
}

var errHubNotHere = errors.New("not connected to this PC")

// hereOnly reads the descriptors of the hubs sysfs shows, and notes the
// others.
type hereOnly struct {
	sys     usb.Sysfs
	r       usb.HubReader
	missing map[string]bool
}

func (h hereOnly) HubDescriptor(ctx context.Context, hub string) (usb.HubDescriptor, error) {
	if _, err := os.Stat(filepath.Join(h.sys.Root, "bus", "usb", "devices", hub)); err != nil {
		h.missing[hub] = true
		return usb.HubDescriptor{}, errHubNotHere
	}
	return h.r.HubDescriptor(ctx, hub)
}

func countProblems(ps lines.Problems) string {
	e, w := len(ps.Errors()), len(ps.Warnings())
	s := plural(e, "error")
	if w > 0 {
		s += ", " + plural(w, "warning")
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// summary is the one line printed for a valid file, e.g.
// "station.yaml: ok: station bench-01, 2 lines, 8 slots (line1: 4 ums; line2: 4 fastboot)".
func summary(st *lines.Station, problems lines.Problems) string {
	var per []string
	for _, l := range st.Lines {
		counts := map[string]int{}
		for _, s := range st.SlotsOf(l.ID) {
			counts[s.Method]++
		}
		methods := make([]string, 0, len(counts))
		for m := range counts {
			methods = append(methods, m)
		}
		sort.Strings(methods)
		var parts []string
		for _, m := range methods {
			parts = append(parts, fmt.Sprintf("%d %s", counts[m], m))
		}
		if len(parts) == 0 {
			parts = []string{"no slots"}
		}
		per = append(per, fmt.Sprintf("%s: %s", l.ID, strings.Join(parts, ", ")))
	}
	s := fmt.Sprintf("%s: ok: station %s, %s, %s (%s)", st.Path, st.ID,
		plural(len(st.Lines), "line"), plural(len(st.Slots), "slot"), strings.Join(per, "; "))
	if w := len(problems.Warnings()); w > 0 {
		s += ", " + plural(w, "warning")
	}
	return s
}
