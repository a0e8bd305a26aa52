package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/flashstation/flashstation/ledger/pgtest"
)

// factoryDemoRun is a demo bench that forwarded its batch to a factory
// ledger: the URL's file, the demo's directory and its serials.
type factoryDemoRun struct {
	c       *pgtest.Cluster
	urlFile string
	dir     string
}

func runFactoryDemo(t *testing.T) factoryDemoRun {
	t.Helper()
	c := pgtest.Start(t)
	root := t.TempDir()
	urlFile := filepath.Join(root, "factory.url")
	if err := os.WriteFile(urlFile, []byte(c.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "bench")
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	var stdout, stderr syncBuffer
	err := run(ctx, []string{"demo", "--headless", "--ledger", "file:" + urlFile, "--station", "bench-q", "--data", dir,
		"--boards", "2", "--speed", "50", "--fast-keys", "--serials", "Q-"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("demo --ledger: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "factory ledger connected") {
		t.Fatalf("the demo never reached its factory ledger:\n%s", stdout.String())
	}
	return factoryDemoRun{c: c, urlFile: urlFile, dir: dir}
}

// TestFactoryReadCommands: QA and supervisors read a bench's record from
// the factory ledger, with the bench's station file nowhere near.
func TestFactoryReadCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	f := runFactoryDemo(t)
	spec := "file:" + f.urlFile
	t.Setenv("FLASHSTATION_CONFIG", "")

	code, out, errOut := runArgs("logs", "Q-00001", "--ledger", spec)
	if code != exitOK || !strings.Contains(out, "serial Q-00001") || !strings.Contains(out, "console (") ||
		!strings.Contains(out, "at station bench-q") || !strings.Contains(out, "type: serial") {
		t.Errorf("logs --ledger: %d\n%s\n%s", code, out, errOut)
	}
	bundle := filepath.Join(t.TempDir(), "q.tar.gz")
	if code, _, errOut := runArgs("logs", "Q-00001", "--ledger", spec, "--bundle", bundle); code != exitOK {
		t.Errorf("logs --ledger --bundle: %d %s", code, errOut)
	} else if names := tarNames(t, bundle); !names["console.log"] || !names["serial.assertion"] {
		t.Errorf("bundle from the factory ledger: %v", names)
	}
	if code, _, _ := runArgs("logs", "NOPE-1", "--ledger", spec); code != exitNoMatch {
		t.Errorf("logs of an unknown serial: exit %d", code)
	}

	code, out, errOut = runArgs("export", "--ledger", spec, "--format", "json")
	var rows []exportRow
	if code != exitOK || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 2 {
		t.Fatalf("export --ledger: %d\n%s\n%s", code, out, errOut)
	}
	for _, r := range rows {
		if r.Station != "bench-q" || len(r.UID) != 36 || len(r.BatchUID) != 36 || r.ChainRows != 2 || len(r.ChainHead) != 64 {
			t.Errorf("export row %+v", r)
		}
	}
	if code, _, _ := runArgs("export", "--ledger", spec, "--station", "bench-x"); code != exitNoMatch {
		t.Errorf("export of an unknown station: exit %d", code)
	}

	code, out, _ = runArgs("assertions", "--ledger", spec, "--station", "bench-q")
	if code != exitOK || strings.Count(out, "type: serial") != 2 {
		t.Errorf("assertions --ledger: %d\n%s", code, out)
	}
	code, out, errOut = runArgs("ledger", "verify", "--ledger", spec, "--config", filepath.Join(f.dir, "station.yaml"))
	if code != exitOK || !strings.Contains(out, "chain head of station bench-q: 2 rows") || !strings.Contains(out, "2 signatures checked") {
		t.Errorf("ledger verify --ledger: %d\n%s\n%s", code, out, errOut)
	}

	code, out, _ = runArgs("status", "--ledger", spec, "--line", "line1")
	if code != exitOK || !strings.Contains(out, "line line1") || !strings.Contains(out, "  bench-q") || !strings.Contains(out, "bench-q seen") {
		t.Errorf("status --ledger --line: %d\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"status", "--ledger", spec, "--station", "bench-x"}, exitNoMatch, "no station \"bench-x\""},
		{[]string{"status", "--ledger", spec, "--line", "line9"}, exitNoMatch, "no line \"line9\""},
		{[]string{"status", "--ledger", spec, "--batch", "1"}, exitUsage, "each bench's own"},
		{[]string{"status", "--watch"}, exitUsage, "give --ledger URL"},
		{[]string{"status", "--ledger", spec, "--watch", "--json"}, exitUsage, "--watch refreshes a terminal"},
		{[]string{"status", "--ledger", "mysql://db/x"}, exitUsage, "is not a postgres:// URL"},
		{[]string{"status", "--ledger", "env:FLASHSTATION_NO_SUCH_VAR"}, exitUsage, "is not set"},
	} {
		code, _, errOut := runArgs(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.says) {
			t.Errorf("%v: exit %d, want %d saying %q:\n%s", tc.args, code, tc.code, tc.says, errOut)
		}
	}

	// A factory ledger that is not there: exit 4, and its password is
	// never shown (only a warning that it was given in the arguments).
	down := "postgres://bench:hunter2@/flashstation?host=" + filepath.Join(t.TempDir(), "nosocket") + "&connect_timeout=2"
	code, _, errOut = runArgs("status", "--ledger", down)
	if code != exitOffline || strings.Contains(errOut, "hunter2") || !strings.Contains(errOut, "every user of this machine") || !strings.Contains(errOut, "cannot reach it") {
		t.Errorf("an unreachable factory ledger: exit %d\n%s", code, errOut)
	}
}

// frameWriter cancels its context once it has seen n status frames.
type frameWriter struct {
	mu     sync.Mutex
	b      strings.Builder
	n      int
	cancel context.CancelFunc
}

func (w *frameWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Count(w.b.String(), "factory ledger postgres") >= w.n {
		w.cancel()
	}
	return len(p), nil
}

// TestFactoryStatusWatch: status --watch prints the figures again until
// it is stopped, and ends cleanly (exit 0) when it is.
func TestFactoryStatusWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	f := runFactoryDemo(t)
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	w := &frameWriter{n: 2, cancel: cancel}
	var stderr syncBuffer
	if err := run(ctx, []string{"status", "--ledger", "file:" + f.urlFile, "--watch"}, w, &stderr); err != nil {
		t.Fatalf("status --watch: %v\n%s", err, stderr.String())
	}
	if got := strings.Count(w.b.String(), "factory ledger postgres"); got < 2 || !strings.Contains(w.b.String(), "all ") {
		t.Errorf("status --watch printed %d frames:\n%s", got, w.b.String())
	}
}

// TestDemoFactoryHeadless: demo --factory runs its own PostgreSQL and
// three bench processes, and prints the factory's figures once they are
// done: every bench there, the sum in "all".
func TestDemoFactoryHeadless(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	if _, err := pgtest.BinDir(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	var stdout, stderr syncBuffer
	// The benches are this test binary (childEnv), as in the other
	// process tests.
	if err := run(ctx, []string{"demo", "--factory", "--headless", "--data", dir, "--boards", "2", "--speed", "50", "--fast-keys"}, &stdout, &stderr); err != nil {
		t.Fatalf("demo --factory: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if !regexp.MustCompile(`(?m)^all +6 +6 +0 `).MatchString(out) {
		t.Errorf("demo --factory: not 6 units passed in all:\n%s", out)
	}
	for _, want := range []string{"line line1", "  bench-1", "  bench-2", "  bench-3", "bench-3 seen"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo --factory lacks %q:\n%s\n%s", want, out, stderr.String())
		}
	}
	for i := 1; i <= 3; i++ {
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("bench-%d", i), "data", "ledger.db")); err != nil {
			t.Errorf("bench-%d kept no ledger: %v", i, err)
		}
	}
}
