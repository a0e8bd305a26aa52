package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/logging"
	"github.com/flashstation/flashstation/sim"
)

// benchConfigHook, when set, adjusts the simulated bench before the demo
// builds it. Only tests set it (generous boot timeouts, a board held in a
// known state); the demo never does.
var benchConfigHook func(*sim.BenchConfig)

func newDemoCommand(stdout, stderr io.Writer) *cobra.Command {
	var o struct {
		boards             int
		speed              float64
		faults, json, head bool
		wrongImage         bool
		data               string
		fastKeys, realKeys bool
		bell               bool
		qemu               bool
		metrics            string
		ledger, station    string
		serials            string
		factory            bool
		benches            int
	}
	cmd := &cobra.Command{
		Use:   "demo [--boards N] [--speed X] [--faults] [--qemu] [--data DIR] [--headless] [--json] [--metrics ADDR] [--ledger URL [--station ID] | --factory]",
		Short: "Run the station on a simulated bench",
		Long: `Run the real station pipeline on a simulated bench: the Serial Vault double,
N simulated boards (half USB mass storage on line1 with the recording proxy,
half fastboot on line2 with console capture), one batch, then a summary.
On a terminal the bench TUI shows it (q quits once you have seen enough);
--headless prints the events instead and ends with the batch.
--faults mixes failures in (write error, kernel panic, hang, garbage, unplug,
boot loop, vault refusal). --qemu makes the boards QEMU armhf boards (4 unless
--boards): their flash mode is simulated, their boots are real (Debian's U-Boot
and kernel under qemu-system-arm, at real speed); it needs make qemu-assets
and runs from flashstation's source tree, which builds the boards' program;
with --faults its guests act out a kernel panic, a seed error and a boot
loop, and one board loses its kernel after the flash (U-Boot refuses it).
--metrics ADDR serves the station's Prometheus metrics at http://ADDR/metrics.
--ledger URL (or env:NAME, file:PATH) forwards the bench's record to that
factory ledger, as station --station (a name of its own: several demos can
share one factory ledger). --factory starts a local PostgreSQL in DIR, runs
three benches on it (separate processes, logs in DIR/bench-N/demo.log) and
opens the supervisors' board (flashstation supervise) on it; headless, it
prints the factory's status once the benches are done.
DIR (a temporary directory unless --data) keeps
station.yaml, vault-key.pub and the ledger, so status, logs, assertions and
export work on it afterwards:

  flashstation assertions --config DIR/station.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			dir := o.data
			if dir == "" {
				var err error
				if dir, err = os.MkdirTemp("", "flashstation-demo-"); err != nil {
					return err
				}
			}
			if o.factory {
				if o.ledger != "" || o.station != "" {
					return usageErrorf("--factory runs its own factory ledger and benches: leave out --ledger and --station")
				}
				return demoFactory(ctx, factoryDemo{dir: dir, benches: o.benches, boards: o.boards, speed: o.speed,
					faults: o.faults, headless: o.head || o.json, fastKeys: o.fastKeys}, stdout, stderr)
			}
			var factoryFile string
			if o.ledger != "" {
				dsn, err := factoryDSN(o.ledger, stderr)
				if err != nil {
					return err
				}
				if err := os.MkdirAll(dir, 0o750); err != nil {
					return err
				}
				// The station file names this file: the URL (and any
				// password) stays out of it and out of the arguments.
				factoryFile = filepath.Join(dir, "factory-ledger.url")
				if err := os.WriteFile(factoryFile, []byte(dsn+"\n"), 0o600); err != nil {
					return err
				}
				if o.station == "" {
					abs, _ := filepath.Abs(dir)
					sum := sha256.Sum256([]byte(abs))
					o.station = "demo-" + hex.EncodeToString(sum[:3])
				}
			}
			// One demo at a time in DIR: its station keeps its record in
			// DIR/data (the bench's station file says so), locked before the
			// bench rewrites DIR's files.
			lock, err := lockDataDir(filepath.Join(dir, "data"), fmt.Sprintf("Stop the demo (or station) that runs on %s first, "+
				"or give this demo another --data DIR; status, logs, export and assertions work beside it.", dir))
			if err != nil {
				return err
			}
			defer lock.Close()
			out := stdout
			if o.json {
				out = stderr
			}
			tty, isTTY := terminal(stdout)
			if !o.head && (!isTTY || o.json) {
				fmt.Fprintln(out, "demo: stdout is not a terminal: running headless")
				o.head = true
			}
			benchLog, _ := logging.New(io.Discard, "")
			benchCfg := sim.BenchConfig{Dir: dir, Boards: o.boards, Speed: o.speed, Faults: o.faults, OtherModel: o.wrongImage,
				FastKeys: o.fastKeys, Logger: benchLog, StationID: o.station, FactoryLedgerFile: factoryFile}
			if o.serials != "" {
				prefix := o.serials
				benchCfg.SerialOf = func(i int) string { return fmt.Sprintf("%s%05d", prefix, i+1) }
			}
			if o.realKeys {
				benchCfg.DeviceKeyBits = 4096
			}
			if o.qemu {
				if !cmd.Flags().Changed("boards") {
					benchCfg.Boards = 4
				}
				assets, err := demoQEMUAssets(ctx)
				if err != nil {
					return err
				}
				benchCfg.QEMU, o.speed = &assets, 1
			}
			kind := "simulated"
			if o.qemu {
				kind = "QEMU armhf"
			}
			fmt.Fprintf(out, "demo: building a bench of %d %s boards in %s (vault key, image, boards)...\n", benchCfg.Boards, kind, dir)
			if benchConfigHook != nil {
				benchConfigHook(&benchCfg)
			}
			bench, err := sim.NewBench(ctx, benchCfg)
			if err != nil {
				return err
			}
			defer bench.Close()
			st, err := loadStation(bench.ConfigPath, stderr)
			if err != nil {
				return err
			}
			st.Metrics.Listen = o.metrics
			perLine := (benchCfg.Boards + 1) / 2
			// The simulated snapd waits scale with the speed; so does the
			// wait for a serial (a refused board fails once it has tried).
			registerTimeout := 10 * time.Minute
			if o.speed > 1 {
				registerTimeout = max(30*time.Second, time.Duration(float64(registerTimeout)/o.speed))
			}
			fmt.Fprintf(out, "demo: station %s, %d slots on 2 lines; vault double at %s\n", st.ID, len(st.Slots), bench.VaultURL)
			if !o.head {
				err = runTUI(ctx, st, bench, headlessOptions{operator: "demo", batchSize: perLine, allowNonUSB: true,
					registerTimeout: registerTimeout, dataLock: lock, bell: o.bell}, tty)
			} else {
				err = runHeadless(ctx, st, bench, headlessOptions{operator: "demo", batchSize: perLine, json: o.json,
					allowNonUSB: true, timeout: 10 * time.Minute, registerTimeout: registerTimeout, dataLock: lock}, stdout, stderr)
			}
			fmt.Fprintf(out, "demo: everything is kept in %s; try:\n  %s status --config %s\n", dir, os.Args[0], bench.ConfigPath)
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.boards, "boards", 8, "simulated boards")
	f.Float64Var(&o.speed, "speed", 20, "boot speed factor (1: real time)")
	f.BoolVar(&o.faults, "faults", false, "mix failures in")
	f.BoolVar(&o.wrongImage, "wrong-image", false, "give the second line another device's model: the image identity gate holds that line")
	f.StringVar(&o.data, "data", "", "keep the bench in DIR (default: a temporary directory)")
	f.BoolVar(&o.head, "headless", false, "run without the TUI and print a summary")
	f.BoolVar(&o.json, "json", false, "print one JSON summary on stdout")
	f.BoolVar(&o.fastKeys, "fast-keys", false, "a 2048-bit vault key instead of 4096 (tests)")
	f.BoolVar(&o.realKeys, "real-keys", false, "4096-bit device keys, as real boards make (slow: the boards' 2048-bit keys keep a big bench bounded by its boots)")
	f.BoolVar(&o.bell, "bell", false, "ring the terminal's bell on every FAIL")
	f.BoolVar(&o.qemu, "qemu", false, "QEMU armhf boards: real U-Boot and kernel boots (make qemu-assets)")
	f.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics at `ADDR` (host:port, e.g. 127.0.0.1:9464)")
	f.StringVar(&o.ledger, "ledger", "", "forward to this factory ledger (a postgres:// URL, env:NAME or file:PATH)")
	f.StringVar(&o.station, "station", "", "the bench's station id (default sim-bench; with --ledger, one made from DIR)")
	f.BoolVar(&o.factory, "factory", false, "a local factory: PostgreSQL, three benches and the supervisors' board")
	f.IntVar(&o.benches, "benches", 3, "with --factory: how many benches")
	f.StringVar(&o.serials, "serials", "", "the boards' hardware serials start with this (default SIM)")
	_ = f.MarkHidden("fast-keys")
	return cmd
}

// demoQEMUAssets finds the QEMU bench's assets, building the boards'
// program from the flashstation source tree the demo runs in.
func demoQEMUAssets(ctx context.Context) (sim.QEMUAssets, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return sim.QEMUAssets{}, errors.New("demo --qemu builds the QEMU boards' program: run it from flashstation's source tree (make demo DEMO_ARGS=--qemu)")
	}
	return sim.FindQEMUAssets(ctx, filepath.Dir(mod))
}
