package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flashstation/flashstation/serialvault"
)

// TestSignalsEndLongCommands runs the station as a child process with a
// command that runs until main's context ends (the vault double), sends it
// SIGTERM or an interrupt once it serves, and checks that it returns by
// itself with exit 0: main turns the signal into the end of its context
// (signal.NotifyContext). Without that the child would be killed by the
// signal, or would ignore it and be killed by the guard.
func TestSignalsEndLongCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the station as a child process")
	}
	key, err := serialvault.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := key.MarshalPEM()
	keyFile := filepath.Join(t.TempDir(), "vault.pem")
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		t.Run(sig.String(), func(t *testing.T) {
			args := []string{"vault", "serve", "--listen", "127.0.0.1:0", "--brand", "acme", "--model", "gw",
				"--api-key", "k", "--key", keyFile}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(args, "\x1f"))
			var stderr syncBuffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// A guard against a child that ignores the signal; the test
			// does not wait for it.
			guard := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
			defer guard.Stop()
			sc := bufio.NewScanner(out)
			serving := false
			for !serving && sc.Scan() {
				serving = strings.HasPrefix(sc.Text(), "vault signs serials")
			}
			if !serving {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the vault double did not start:\n%s", stderr.String())
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			go io.Copy(io.Discard, out)
			err = cmd.Wait()
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			var ee *exec.ExitError
			switch {
			case ws.Signaled():
				t.Errorf("killed by %v: main did not handle %v", ws.Signal(), sig)
			case errors.As(err, &ee):
				t.Errorf("exit %d after %v, want 0", ee.ExitCode(), sig)
			case err != nil:
				t.Error(err)
			}
		})
	}
}

// TestUntrustedYAML: a profile file that crashed the YAML library, a
// deeply nested station file and an alias bomb are refused with an error
// naming the file (exit 2), not a panic, a stall or an exhausted memory.
func TestUntrustedYAML(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	crash := write("p.yaml", "A: 0\nstages:\n  ! 0\n00000008: 0")
	deep := write("deep.yaml", "station: "+strings.Repeat("[", 100000)+strings.Repeat("]", 100000)+"\n")
	bomb := write("bomb.yaml", "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"+
		"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"+
		"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nstation: *e\n")
	big := write("big.yaml", strings.Repeat("# padding\n", 200000))
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"crashing profile", []string{"watch", "--port", "/dev/null", "--profile", crash}, "boot profile: " + crash + ": cannot read this YAML"},
		{"deep nesting", []string{"config", "check", deep}, deep + ":1:73: the station file nests deeper than 64 levels"},
		{"alias bomb", []string{"config", "check", bomb}, bomb + ":5:36: aliases expand to more than 100000 nodes"},
		{"huge file", []string{"config", "check", big}, big + ": the station file is 2000000 bytes, over the 1 MiB limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(tc.args...)
			if code != 2 || stdout != "" || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and %q", code, stdout, stderr, tc.stderr)
			}
		})
	}
}
