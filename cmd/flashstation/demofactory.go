package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/flashstation/flashstation/internal/pgcluster"
	"github.com/flashstation/flashstation/ledger"
)

// benchCommand is the command of one of demo --factory's benches: this
// program with args (tests run their own binary as the program).
var benchCommand = func(ctx context.Context, args []string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, exe, args...), nil
}

// factoryDemo is demo --factory's settings.
type factoryDemo struct {
	dir             string
	benches, boards int
	speed           float64
	faults          bool
	headless        bool
	fastKeys        bool
}

// demoFactory runs a local factory: a throwaway PostgreSQL in DIR (on a
// unix socket there), o.benches benches as separate demo processes
// forwarding to it, and the supervisors' board on it (or, headless, the
// factory's status once the benches are done).
func demoFactory(ctx context.Context, o factoryDemo, stdout, stderr io.Writer) error {
	if o.benches < 1 || o.benches > 16 {
		return usageErrorf("--benches %d: give 1 to 16", o.benches)
	}
	tty, isTTY := terminal(stdout)
	if !o.headless && !isTTY {
		fmt.Fprintln(stderr, "demo: stdout is not a terminal: running headless")
		o.headless = true
	}
	out := stdout
	if o.headless {
		out = stderr
	}
	if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return err
	}
	fmt.Fprintf(out, "demo: starting a factory ledger (PostgreSQL) in %s...\n", o.dir)
	c, err := pgcluster.New(o.dir)
	if errors.Is(err, pgcluster.ErrNoServer) {
		return configError(err, "Install Debian's postgresql (make deps does), then run the demo again.")
	}
	if err != nil {
		return err
	}
	defer c.Stop()
	// Made once here, so the board can open it before the benches do.
	fac, err := ledger.OpenFactory(ctx, c.URL)
	if err != nil {
		return err
	}
	fac.Close()
	urlFile := filepath.Join(o.dir, "factory-ledger.url")
	if err := os.WriteFile(urlFile, []byte(c.URL+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(out, "demo: factory ledger %s\n", c.URL)
	bctx, stopBenches := context.WithCancel(ctx)
	defer stopBenches()
	var wg sync.WaitGroup
	failed := make([]error, o.benches)
	for i := range o.benches {
		name := fmt.Sprintf("bench-%d", i+1)
		bdir := filepath.Join(o.dir, name)
		if err := os.MkdirAll(bdir, 0o750); err != nil {
			return err
		}
		logFile, err := os.Create(filepath.Join(bdir, "demo.log"))
		if err != nil {
			return err
		}
		args := []string{"demo", "--headless", "--ledger", "file:" + urlFile, "--station", name, "--data", bdir,
			"--boards", strconv.Itoa(o.boards), "--serials", fmt.Sprintf("B%d-", i+1)}
		if o.speed > 0 {
			args = append(args, "--speed", strconv.FormatFloat(o.speed, 'g', -1, 64))
		}
		if o.faults {
			args = append(args, "--faults")
		}
		if o.fastKeys {
			args = append(args, "--fast-keys")
		}
		cmd, err := benchCommand(bctx, args)
		if err != nil {
			logFile.Close()
			return err
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		// Stopped as an operator stops a station: it ends its units and
		// batch, and sends what it recorded.
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 30 * time.Second
		if err := cmd.Start(); err != nil {
			logFile.Close()
			return err
		}
		fmt.Fprintf(out, "demo: %s runs %d boards (log %s)\n", name, o.boards, logFile.Name())
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer logFile.Close()
			if err := cmd.Wait(); err != nil && bctx.Err() == nil {
				failed[i] = fmt.Errorf("%s: %w (see %s)", name, err, logFile.Name())
			}
		}()
	}
	if !o.headless {
		err := runSupervise(ctx, c.URL, tty)
		stopBenches()
		wg.Wait()
		return err
	}
	wg.Wait()
	led, err := ledger.OpenFactoryReadOnly(ctx, c.URL)
	if err != nil {
		return err
	}
	defer led.Close()
	rep, err := led.FactoryReport(ctx, ledger.FactoryFilter{})
	if err != nil {
		return err
	}
	printFactory(stdout, led.Path(), scope{}, "", rep)
	fmt.Fprintf(out, "demo: everything is kept in %s; the factory ledger is stopped with the demo\n", o.dir)
	return errors.Join(failed...)
}
