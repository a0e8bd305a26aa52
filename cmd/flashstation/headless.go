package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/internal/datadir"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/metrics"
	"github.com/flashstation/flashstation/usb"
	"github.com/flashstation/flashstation/usb/libusb"
)

// runFlags are the flags of a station run (run, and the root command).
type runFlags struct {
	config, operator string
	headless, json   bool
	batchSize        int
	allowNonUSB      bool
	bell             bool
}

func (o *runFlags) register(f *pflag.FlagSet, headless bool) {
	f.StringVar(&o.config, "config", defaultConfig(), "station file")
	f.IntVar(&o.batchSize, "batch-size", 0, "units per line in this batch (0: until stopped)")
	f.StringVar(&o.operator, "operator", "", "operator name for the batch (default: the bench TUI asks for a name or badge; --headless records $USER)")
	f.BoolVar(&o.allowNonUSB, "allow-non-usb", false, "allow disks that are not on USB (labs)")
	f.BoolVar(&o.bell, "bell", false, "ring the terminal's bell on every FAIL (the bench TUI)")
	if headless {
		f.BoolVar(&o.headless, "headless", false, "run without the TUI")
		f.BoolVar(&o.json, "json", false, "print one JSON summary on stdout (with --headless)")
	}
}

// run runs the configured bench: the TUI on a terminal, else headless
// when asked.
func (o *runFlags) run(ctx context.Context, stdout, stderr io.Writer) error {
	tty, isTTY := terminal(stdout)
	if !o.headless && !isTTY {
		return usageErrorf("the bench TUI needs a terminal: use 'flashstation run --headless'")
	}
	if o.json && !o.headless {
		return usageErrorf("--json goes with --headless")
	}
	st, err := loadStation(o.config, stderr)
	if err != nil {
		return err
	}
	hw := &lines.RealHardware{Sysfs: usbSystem(), USB: libusb.New()}
	defer hw.Close() // the station has ended: its libusb context goes
	opts := headlessOptions{operator: strings.TrimSpace(o.operator), batchSize: o.batchSize, json: o.json, allowNonUSB: o.allowNonUSB, bell: o.bell}
	if opts.operator == "" && o.headless {
		// As before the bench asked: the login's name, said not given.
		opts.operator, opts.operatorNotGiven = os.Getenv("USER"), true
	}
	if !o.headless {
		return runTUI(ctx, st, hw, opts, tty)
	}
	return runHeadless(ctx, st, hw, opts, stdout, stderr)
}

func newRunCommand(stdout, stderr io.Writer) *cobra.Command {
	var o runFlags
	cmd := &cobra.Command{
		Use:   "run [--config FILE] [--headless] [--batch-size N] [--json]",
		Short: "Run a batch on the configured bench (the bench TUI, or --headless)",
		Long: `Run the station: every slot takes boards from insertion to a recorded serial
assertion on its own. On a terminal the bench TUI shows every slot (the same
as running flashstation with no command). With --headless (systemd, a second
screen) each event is printed as it happens. With --batch-size N each line's
batch plans N units: a headless run ends when every line finished them and
prints a summary; otherwise it runs until stopped (SIGINT, SIGTERM, or q in
the TUI). Exit 1 when a unit failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), stdout, stderr) },
	}
	o.register(cmd.Flags(), true)
	return cmd
}

type headlessOptions struct {
	operator string
	// operatorNotGiven: a headless run without --operator (operator is
	// $USER, or empty); the TUI asks instead.
	operatorNotGiven bool
	batchSize        int
	json             bool
	allowNonUSB      bool
	bell             bool // the TUI rings on a FAIL
	timeout          time.Duration
	// registerTimeout is the wait for a board's serial (0: the pipeline's
	// 10 min; the demo scales it with its speed).
	registerTimeout time.Duration
	// dataLock is the data directory's lock when the caller already holds
	// it (the demo takes it before it builds its bench); else the station
	// takes it.
	dataLock *datadir.Lock
}

// stationRun is a started station: its log, ledger and pipeline.
type stationRun struct {
	log     zerolog.Logger
	led     *ledger.Ledger
	p       *lines.Pipeline
	metrics *metrics.Station // nil: station.metrics is not set
	closers []func()
}

func (r *stationRun) Close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

// batchIDs are the ids of the run's batches.
func (r *stationRun) batchIDs() []int64 {
	var ids []int64
	for _, b := range sortedBatches(r.p.Batches()) {
		ids = append(ids, b.ID)
	}
	return ids
}

// startStation takes the station's data directory, opens its log and
// ledger and prepares its pipeline (images, proxies, batches). The data
// directory stays locked until Close.
func startStation(ctx context.Context, st *lines.Station, hw lines.Hardware, o headlessOptions) (*stationRun, error) {
	r := &stationRun{}
	if o.dataLock == nil || !sameDir(o.dataLock.Dir(), st.DataDir) {
		lock, err := lockStation(st)
		if err != nil {
			return nil, err
		}
		r.closers = append(r.closers, func() { lock.Close() })
	}
	log, logFile, err := stationLogger(st)
	if err != nil {
		r.Close()
		return nil, configError(err, fmt.Sprintf("Check station.data-dir in %s: the station's user must be able to write there.", st.Path))
	}
	r.log = log
	r.closers = append(r.closers, func() { logFile.Close() })
	if r.led, err = openLedger(ctx, st); err != nil {
		r.Close()
		return nil, err
	}
	r.closers = append(r.closers, func() { r.led.Close() })
	r.p, err = lines.NewPipeline(ctx, st, lines.Options{Hardware: hw, Ledger: r.led, Logger: log, Operator: o.operator,
		BatchSize: o.batchSize, AllowNonUSB: o.allowNonUSB, RegisterTimeout: o.registerTimeout})
	if err != nil {
		r.Close()
		return nil, pipelineError(ctx, st, err)
	}
	if st.Metrics.Listen != "" {
		// Subscribed before the pipeline runs; closed after the pipeline
		// (the closers run last first), once its event stream has ended.
		var backlog metrics.Backlogger
		if _, ok := r.p.Factory(); ok {
			backlog = r.p
		}
		if r.metrics, err = metrics.Start(st, r.p, backlog, log); err != nil {
			r.p.Close()
			r.Close()
			hint := "Give the metrics a host:port this machine can listen on"
			if errors.Is(err, syscall.EADDRINUSE) {
				hint = "Another program listens on the metrics address: stop it, or give another"
			}
			return nil, &exitError{code: exitUsage, reason: reasonConfig, err: fmt.Errorf("station %s cannot start: %w", st.ID, err),
				hint: hint + " (station.metrics.listen in " + st.Path + ", or demo --metrics)."}
		}
		r.closers = append(r.closers, func() { r.metrics.Close() })
	}
	r.closers = append(r.closers, r.p.Close)
	return r, nil
}

// sayMetrics tells where the station's metrics are served, if they are.
func (r *stationRun) sayMetrics(w io.Writer) {
	if r.metrics != nil {
		fmt.Fprintf(w, "metrics at http://%s/metrics\n", r.metrics.Addr())
	}
}

// pipelineError explains why the station could not start. No board was
// touched, so it is no verdict: the station file, a secret it names, an
// image or an address is wrong (exit 2).
func pipelineError(ctx context.Context, st *lines.Station, err error) error {
	if ctx.Err() != nil {
		return err // stopped while preparing
	}
	hint := fmt.Sprintf("Fix the station file %s; 'flashstation config check %[1]s' lists its problems.", st.Path)
	reason := reasonConfig
	switch {
	case errors.Is(err, lines.ErrImagesRefused):
		reason, hint = flash.ReasonImage, fmt.Sprintf("Give each line the image built from its model (lines[].image in %s); "+
			"'flashstation image inspect --config %[1]s --line ID' shows what the gate found.", st.Path)
	case errors.Is(err, flash.ErrImageRefused):
		reason, hint = flash.ReasonImage, fmt.Sprintf("Fix the line's image (file, sha256, bmap) in %s.", st.Path)
	case errors.Is(err, syscall.EADDRINUSE):
		hint = "Another program listens on a line's proxy address: stop it, or change lines[].proxy.listen in " + st.Path + "."
	case strings.Contains(err.Error(), "environment variable"):
		// lines.SecretRef.Resolve names the variable it misses.
		hint = "Set the variable in the station's environment (systemd: Environment= or EnvironmentFile=), " +
			"or reference a file with {file: PATH} in " + st.Path + "."
	}
	return &exitError{code: exitUsage, reason: reason, err: fmt.Errorf("station %s cannot start: %w", st.ID, err), hint: hint}
}

// finish prints the run's summary and says how it went.
func (r *stationRun) finish(o headlessOptions, took time.Duration, stdout io.Writer) error {
	sum, err := lines.Summarize(context.Background(), r.led, r.batchIDs())
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sum); err != nil {
			return err
		}
	} else {
		printSummary(stdout, sum, took)
		if o.operatorNotGiven {
			fmt.Fprintf(stdout, "%s (--operator)\n", operatorWords(r.p.Operator(), true))
		}
	}
	if n := sum.Failed + sum.Errors + sum.Aborted; n > 0 {
		return reported(exitVerdict, fmt.Errorf("%d units did not pass: %d failed, %d station errors, %d aborted", n, sum.Failed, sum.Errors, sum.Aborted))
	}
	return nil
}

// runHeadless runs a pipeline, printing events, then a summary.
func runHeadless(ctx context.Context, st *lines.Station, hw lines.Hardware, o headlessOptions, stdout, stderr io.Writer) error {
	r, err := startStation(ctx, st, hw, o)
	if err != nil {
		return err
	}
	defer r.Close()
	p := r.p
	events := p.Subscribe(1024)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.timeout > 0 {
		var c context.CancelFunc
		runCtx, c = context.WithTimeout(runCtx, o.timeout)
		defer c()
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	out := stdout
	if o.json {
		out = stderr // stdout carries only the JSON document
	}
	start := time.Now()
	r.sayMetrics(out)
	for _, b := range sortedBatches(p.Batches()) {
		fmt.Fprintf(out, "batch %d on line %s (%s)\n", b.ID, b.LineID, operatorWords(b.Operator, o.operatorNotGiven))
	}
loop:
	for {
		select {
		case e, ok := <-events:
			if !ok {
				break loop
			}
			printEvent(out, start, e)
		case <-p.Done():
			cancel()
		case <-done:
			break loop
		}
	}
	return r.finish(o, time.Since(start), stdout)
}

// operatorWords says who the batch's operator is: `operator "ana"`, and
// when --operator was not given, that it was not (with the $USER recorded
// instead, if any).
func operatorWords(name string, notGiven bool) string {
	switch {
	case notGiven && name == "":
		return "operator not given"
	case notGiven:
		return fmt.Sprintf("operator not given: $USER %q recorded", name)
	case name == "":
		return "operator not given"
	}
	return fmt.Sprintf("operator %q", name)
}

func sortedBatches(m map[string]ledger.Batch) []ledger.Batch {
	var out []ledger.Batch
	for _, b := range m {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// printEvent prints the events an operator follows in a log: states,
// stages, verdicts and notices (not progress or console lines).
func printEvent(w io.Writer, start time.Time, e lines.Event) {
	at := fmt.Sprintf("%7.1fs", e.At.Sub(start).Seconds())
	switch e.Kind {
	case lines.EventState:
		switch e.State {
		case lines.StatePresent:
			fmt.Fprintf(w, "%s  %-4s board %s present\n", at, e.Slot, e.HWSerial)
		case lines.StateFlashing, lines.StateBooting, lines.StateRegister:
			fmt.Fprintf(w, "%s  %-4s %s\n", at, e.Slot, e.State)
		}
	case lines.EventStage:
		if !e.Skipped {
			fmt.Fprintf(w, "%s  %-4s   boot: %s\n", at, e.Slot, e.Stage)
		}
	case lines.EventVerdict:
		if e.State == lines.StatePass {
			fmt.Fprintf(w, "%s  %-4s PASS  board %s serial %s\n", at, e.Slot, e.HWSerial, e.Serial)
		} else {
			r := lines.ReasonFor(e.Reason)
			fmt.Fprintf(w, "%s  %-4s FAIL  board %s: %s (%s): %s\n", at, e.Slot, e.HWSerial, e.Reason, r.What, r.Advice)
		}
	case lines.EventNotice:
		fmt.Fprintf(w, "%s  %-4s note: %s\n", at, e.Slot, e.Text)
	}
}

func printSummary(w io.Writer, s lines.Summary, took time.Duration) {
	fmt.Fprintf(w, "\n%d passed, %d failed", s.Passed, s.Failed)
	if s.Errors > 0 {
		fmt.Fprintf(w, ", %d station errors", s.Errors)
	}
	if s.Aborted > 0 {
		fmt.Fprintf(w, ", %d aborted", s.Aborted)
	}
	fmt.Fprintf(w, " in %s\n", took.Round(time.Second))
	fmt.Fprintf(w, "%-5s %-4s %-10s %-12s %-7s %s\n", "UNIT", "SLOT", "BOARD", "SERIAL", "VERDICT", "REASON")
	for _, u := range s.Units {
		fmt.Fprintf(w, "%-5d %-4s %-10s %-12s %-7s %s\n", u.Unit, u.Slot, u.HWSerial, u.Serial, u.Verdict, u.Reason)
	}
}

func usbSystem() usb.Sysfs { return usb.System }
