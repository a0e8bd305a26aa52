package datadir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// holdEnv makes the test binary a second process: it locks the directory
// named in it, prints "locked PID" and holds the lock until its stdin
// closes or it is killed.
const holdEnv = "DATADIR_TEST_HOLD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(holdEnv); dir != "" {
		l, err := Acquire(dir)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("locked", os.Getpid())
		_, _ = io.Copy(io.Discard, os.Stdin)
		l.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holder is a second process holding a directory's lock.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	pid   int
}

// hold starts a process that locks dir, and returns once it holds it.
func hold(t *testing.T, dir string) *holder {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { h.cmd.Process.Kill(); h.cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	pid, ok := strings.CutPrefix(strings.TrimSpace(line), "locked ")
	if !ok {
		t.Fatalf("holder: %q %v", line, err)
	}
	if h.pid, err = strconv.Atoi(pid); err != nil || h.pid != cmd.Process.Pid {
		t.Fatalf("holder says pid %q, started %d", pid, cmd.Process.Pid)
	}
	return h
}

// inUse checks err is an *InUseError naming dir and returns it.
func inUse(t *testing.T, err error, dir string) *InUseError {
	t.Helper()
	var e *InUseError
	if !errors.As(err, &e) {
		t.Fatalf("want an *InUseError, got %v", err)
	}
	if e.Dir != dir {
		t.Errorf("error names directory %s, want %s", e.Dir, dir)
	}
	return e
}

func hostname(t *testing.T) string {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return host
}

func TestSecondLockRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // created by Acquire
	before := time.Now().Truncate(time.Second)
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	after := time.Now()
	if l.Dir() != dir {
		t.Errorf("Dir() = %s", l.Dir())
	}

	// A second open file description conflicts, even in this process.
	_, err = Acquire(dir)
	e := inUse(t, err, dir)
	if !e.Known || e.Holder.PID != os.Getpid() || e.Holder.Host != hostname(t) {
		t.Errorf("holder %+v (known %v), want pid %d on %s", e.Holder, e.Known, os.Getpid(), hostname(t))
	}
	if e.Holder.Since.Before(before) || e.Holder.Since.After(after) {
		t.Errorf("since %s, want between %s and %s", e.Holder.Since, before, after)
	}
	want := fmt.Sprintf("data directory %s in use by pid %d on %s since %s", dir, os.Getpid(), hostname(t), e.Holder.Since.Format(time.RFC3339))
	if err.Error() != want {
		t.Errorf("message\n %q, want\n %q", err, want)
	}
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), fmt.Sprintf("pid %d\n", os.Getpid())) {
		t.Errorf("lock file:\n%s", data)
	}
}

func TestReleasedOnClose(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, FileName)); err != nil || len(data) != 0 {
		t.Errorf("a released lock file holds %q (%v), want it empty", data, err)
	}
	again, err := Acquire(dir)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	again.Close()
}

// TestStaleFileDoesNotBlock: a lock file naming a station that is gone
// (no flock on it) is taken over and rewritten.
func TestStaleFileDoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	stale := "pid 999999999\nhost other-bench\nsince 2020-01-02T03:04:05Z\n" + strings.Repeat("# padding longer than ours\n", 8)
	if err := os.WriteFile(path, []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("a stale lock file blocks: %v", err)
	}
	defer l.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := parseHolder(data)
	if !ok || h.PID != os.Getpid() || strings.Contains(string(data), "other-bench") || strings.Contains(string(data), "padding") {
		t.Errorf("lock file not rewritten for this station:\n%s", data)
	}
}

// TestOtherProcess: a lock another process holds refuses this one with
// its pid; once that process is killed the kernel has dropped its lock,
// and the file it left, still naming it, does not block.
func TestOtherProcess(t *testing.T) {
	dir := t.TempDir()
	h := hold(t, dir)
	_, err := Acquire(dir)
	e := inUse(t, err, dir)
	if !e.Known || e.Holder.PID != h.pid || e.Holder.Host != hostname(t) {
		t.Errorf("holder %+v, want pid %d", e.Holder, h.pid)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("in use by pid %d on %s since ", h.pid, hostname(t))) {
		t.Errorf("message %q", err)
	}

	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = h.cmd.Wait()
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if left, ok := parseHolder(data); !ok || left.PID != h.pid {
		t.Fatalf("the killed holder's file: %q", data)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	l.Close()
}

// TestOtherProcessEnds: a holder that closes its lock and ends leaves
// the directory to the next station.
func TestOtherProcessEnds(t *testing.T) {
	dir := t.TempDir()
	h := hold(t, dir)
	h.stdin.Close() // the holder closes its lock and exits
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// TestHolderNotWrittenYet: a lock held on a file that names nobody (its
// holder has not written it yet) still refuses, saying so.
func TestHolderNotWrittenYet(t *testing.T) {
	dir := t.TempDir()
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir)
	if e := inUse(t, err, dir); e.Known {
		t.Errorf("holder %+v from an empty file", e.Holder)
	}
	if want := "data directory " + dir + " in use by another station"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q, want it to start with %q", err, want)
	}
}

func TestAcquireErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Acquire(file) // not a directory
	var e *InUseError
	if err == nil || errors.As(err, &e) {
		t.Errorf("Acquire on a file: %v", err)
	}
}

func TestParseHolder(t *testing.T) {
	since := time.Date(2026, 3, 1, 10, 0, 0, 0, time.FixedZone("", 3600))
	for _, tc := range []struct {
		name, data string
		want       Holder
		ok         bool
	}{
		{"ours", string(Holder{PID: 42, Host: "bench-1", Since: since}.format()), Holder{42, "bench-1", since}, true},
		{"first of each key", "pid 42\nhost bench-1\nsince 2026-03-01T10:00:00+01:00\npid 7\nsince 2020-01-01T00:00:00Z\n", Holder{42, "bench-1", since}, true},
		{"unknown lines", "# flashstation\npid 42\nwhatever\nhost bench-1\nsince 2026-03-01T10:00:00+01:00", Holder{42, "bench-1", since}, true},
		{"empty", "", Holder{}, false},
		{"no time", "pid 42\nhost bench-1\n", Holder{}, false},
		{"bad pid", "pid -1\nhost h\nsince 2026-03-01T10:00:00Z\n", Holder{}, false},
		{"pid not a number", "pid x\nhost h\nsince 2026-03-01T10:00:00Z\n", Holder{}, false},
		{"bad time", "pid 1\nhost h\nsince yesterday\n", Holder{}, false},
		{"control in host", "pid 1\nhost h\x1b[2J\nsince 2026-03-01T10:00:00Z\n", Holder{}, false},
		{"space in host", "pid 1\nhost a b\nsince 2026-03-01T10:00:00Z\n", Holder{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseHolder([]byte(tc.data))
			if ok != tc.ok || got.PID != tc.want.PID || got.Host != tc.want.Host || !got.Since.Equal(tc.want.Since) {
				t.Errorf("parseHolder = %+v %v, want %+v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzParseHolder: any lock file content parses without panicking, and a
// holder it accepts formats back to content that parses the same.
func FuzzParseHolder(f *testing.F) {
	f.Add([]byte("pid 42\nhost bench-1\nsince 2026-03-01T10:00:00+01:00\n"))
	f.Add([]byte("pid 1\nhost h\nsince 2026-03-01T10:00:00Z\npid 2\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, ok := parseHolder(data)
		if !ok {
			return
		}
		again, ok := parseHolder(h.format())
		if !ok || again.PID != h.PID || again.Host != h.Host || !again.Since.Equal(h.Since) {
			t.Errorf("%+v formats to %q, which parses to %+v %v", h, h.format(), again, ok)
		}
	})
}
