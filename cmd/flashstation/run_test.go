package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/flashstation/flashstation/internal/armimage"
	"github.com/flashstation/flashstation/seed"
	"github.com/flashstation/flashstation/sim"
)

// childEnv makes the test binary run flashstation with the arguments in
// it (separated by 0x1f), for tests that kill the station.
const childEnv = "FLASHSTATION_TEST_CHILD_ARGS"

// holdEnv, in a child's environment, names a simulated board (its index)
// that never registers: its unit stays in flight for the station's
// registration timeout (10 minutes), so a test that kills the station
// knows one is.
const holdEnv = "FLASHSTATION_TEST_HOLD_BOARD"

// ceiling bounds a wait on an event; it only turns a hang into a failure.
const ceiling = 3 * time.Minute

// testBench is the simulated bench of the demos tests run: boot timeouts
// that only turn a hang into a failure, so that a loaded machine never
// times out a boot that works, and the board of holdEnv held.
func testBench(c *sim.BenchConfig) {
	c.MinTimeout = ceiling
	if held, err := strconv.Atoi(os.Getenv(holdEnv)); err == nil {
		c.FaultsOf = func(i int) sim.Faults { return sim.Faults{NeverRegisters: i == held} }
	}
}

func TestMain(m *testing.M) {
	armimage.ForwardMain()
	seed.ReaderMain()
	benchConfigHook = testBench
	benchCommand = func(ctx context.Context, args []string) (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(args, "\x1f"))
		return cmd, nil
	}
	if args := os.Getenv(childEnv); args != "" {
		os.Args = append([]string{"flashstation"}, strings.Split(args, "\x1f")...)
		main()
		return
	}
	testscript.Main(m, map[string]func(){
		"flashstation": main,
	})
}

// TestScripts runs the command-line scripts in testdata/script.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			// Scripts reach the shipped configs and assets through $REPO.
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			env.Setenv("REPO", strings.TrimSuffix(wd, "/cmd/flashstation"))
			return nil
		},
	})
}

// TestRunExitCodes checks the exit codes of the command-line contract.
func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		stdout    string
		stderr    string
		noStdout  bool
		notInHelp []string
	}{
		{name: "help", args: []string{"--help"}, code: 0, stdout: "config", notInHelp: nil},
		{name: "no args opens the TUI, which needs a terminal", args: nil, code: 2, stderr: "the bench TUI needs a terminal: use 'flashstation run --headless'", noStdout: true},
		{name: "run without a terminal", args: []string{"run", "--config", "../../configs/station.example.yaml"}, code: 2, stderr: "needs a terminal", noStdout: true},
		{name: "help shows the default command", args: []string{"--help"}, code: 0, stdout: "With no command it opens the bench TUI"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`, noStdout: true},
		{name: "unknown flag", args: []string{"--frob"}, code: 2, stderr: "unknown flag: --frob", noStdout: true},
		{name: "missing argument", args: []string{"config", "check"}, code: 2, stderr: "Usage: flashstation config check FILE", noStdout: true},
		{name: "missing file", args: []string{"config", "check", "/nonexistent/station.yaml"}, code: 2, stderr: "no such file", noStdout: true},
		{name: "broken config", args: []string{"config", "check", "../../lines/testdata/config/broken.yaml"}, code: 2, stderr: "broken.yaml:19:16: lines[0].boot.trigger", noStdout: true},
		{name: "valid config", args: []string{"config", "check", "../../configs/station.example.yaml"}, code: 0, stdout: "ok: station bench-01, 2 lines, 8 slots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tc.args, &stdout, &stderr)
			if got := exitCode(err); got != tc.code {
				t.Errorf("exit code %d, want %d (err %v)\nstderr: %s", got, tc.code, err, stderr.String())
			}
			if tc.stdout != "" && !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, stdout.String())
			}
			if tc.stderr != "" && !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr.String())
			}
			if tc.noStdout && stdout.Len() > 0 {
				t.Errorf("unexpected stdout: %s", stdout.String())
			}
			for _, s := range tc.notInHelp {
				if strings.Contains(stdout.String(), "\n  "+s) {
					t.Errorf("help advertises %q, which does not exist yet", s)
				}
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	if exitCode(nil) != 0 || exitCode(usageErrorf("x")) != 2 || exitCode(reported(1, os.ErrClosed)) != 1 || exitCode(os.ErrClosed) != 1 {
		t.Error("exitCode mapping wrong")
	}
}
