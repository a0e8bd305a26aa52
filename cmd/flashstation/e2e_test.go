package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"
	"github.com/creack/pty"

	"github.com/flashstation/flashstation/internal/datadir"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
	"github.com/flashstation/flashstation/sim"
)

// TestKilledStationResumes kills a station running a demo batch with
// SIGKILL once some boards passed, restarts it on the same data, and
// checks: the batch resumes (same batch), units in flight were marked
// interrupted with their evidence, every serial the station reported is in
// the ledger, and no unit record is duplicated. In the first run the
// board of slot A1 never registers (holdEnv): once the station says it
// waits for its registration, its unit is in flight until the kill.
func TestKilledStationResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	dir := t.TempDir()
	args := []string{"demo", "--headless", "--data", dir, "--boards", "8", "--speed", "50", "--fast-keys"}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(args, "\x1f"), holdEnv+"=0") // board 0 is slot A1's
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	passRe := regexp.MustCompile(`PASS\s+board (\S+) serial (\S+)`)
	heldRe := regexp.MustCompile(`\sA1\s+register$`)
	var passed []string
	held := false
	sc := bufio.NewScanner(out)
	hang := time.AfterFunc(ceiling, func() { cmd.Process.Kill() }) // only turns a hang into a failure
	for sc.Scan() {
		if m := passRe.FindStringSubmatch(sc.Text()); m != nil {
			passed = append(passed, m[2])
		}
		held = held || heldRe.MatchString(sc.Text())
		if len(passed) >= 3 && held {
			checkHeldBy(t, dir, cmd.Process.Pid, args)
			cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	hang.Stop()
	cmd.Wait()
	if len(passed) < 3 || !held {
		t.Fatalf("the first run reported %d passes (held board registering: %v) before it ended", len(passed), held)
	}

	// The restarted station on the same data.
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	var stdout, stderr syncBuffer
	err = run(ctx, append(args[:0:0], args...), &stdout, &stderr)
	if err != nil && exitCode(err) != exitVerdict {
		t.Fatalf("restart: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "passed") {
		t.Fatalf("no summary:\n%s", stdout.String())
	}
	if lock, err := datadir.Acquire(filepath.Join(dir, "data")); err != nil {
		t.Errorf("the ended demo still holds its data directory: %v", err)
	} else {
		lock.Close()
	}
	led, err := ledger.Open(ctx, filepath.Join(dir, "data", ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	// The restart resumed the first run's two batches and closed them once
	// their boards were done: none was abandoned (left open, or closed as
	// stopped). A line whose batch completed before the kill (the kill
	// comes when the parent has read three passes; the child may be further
	// on) rightly gets a new batch, which completes too.
	batches, _ := led.BatchIDs(ctx)
	if len(batches) < 2 || batches[0] != 1 || batches[1] != 2 {
		t.Fatalf("batches %v: want the first run's 1 and 2", batches)
	}
	for _, id := range batches {
		if b, err := led.Batch(ctx, id); err != nil || b.State != ledger.BatchClosed || b.CloseReason != ledger.BatchComplete {
			t.Errorf("batch %d after the restart: %+v %v", id, b, err)
		}
	}
	var allUnits []ledger.Unit
	for _, b := range []int64{1, 2} {
		us, err := led.Units(ctx, ledger.UnitFilter{BatchID: b})
		if err != nil {
			t.Fatal(err)
		}
		allUnits = append(allUnits, us...)
	}
	seen := map[string]bool{}
	interrupted := 0
	heldAborted := false
	for _, u := range allUnits {
		key := u.HWSerial + "/" + string(rune('0'+u.Attempt))
		if seen[key] {
			t.Errorf("duplicate unit record for %s attempt %d", u.HWSerial, u.Attempt)
		}
		seen[key] = true
		if u.State == ledger.UnitRunning {
			t.Errorf("unit %d still running after the restart", u.ID)
		}
		if u.State == ledger.UnitAborted {
			interrupted++
			heldAborted = heldAborted || u.SlotID == "A1"
			if ts, _ := led.Transcripts(ctx, u.ID); len(ts) == 0 {
				evs, _ := led.Events(ctx, u.ID)
				if len(evs) == 0 {
					t.Errorf("interrupted unit %d kept no evidence", u.ID)
				}
			}
		}
	}
	if interrupted == 0 || !heldAborted {
		t.Errorf("%d units marked interrupted, none of A1 (%v), yet A1's was in flight when the station was killed", interrupted, heldAborted)
	}
	for _, s := range passed {
		as, err := led.SerialAssertions(ctx, ledger.AssertionFilter{Serial: s})
		if err != nil || len(as) == 0 {
			t.Errorf("serial %s reported before the kill is not in the ledger", s)
		}
	}
	agreesWithVaultLog(t, ctx, dir, led)
}

// agreesWithVaultLog compares the demo's vault's signing log (kept in its
// bench directory across the kill) with the ledger, line by line, as
// reconcile does. A serial the vault signed for a unit the kill cut off
// is in the vault only, and must be named (not-in-ledger, for a board
// whose unit was interrupted): on the console line the board registered
// with the vault itself and the station had not read it yet; on the proxy
// line the kill came between the vault's signature and the spool write, so
// the answer never left the station (the board never got it). Anything
// else is a loss.
func agreesWithVaultLog(t *testing.T, ctx context.Context, dir string, led *ledger.Ledger) {
	t.Helper()
	st, problems, err := lines.LoadValid(filepath.Join(dir, "station.yaml"))
	if err != nil {
		t.Fatalf("%v %v", err, problems)
	}
	vault, err := vaulttest.Open(vaulttest.Options{LogFile: filepath.Join(dir, sim.VaultLogFile)})
	if err != nil {
		t.Fatal(err)
	}
	logs := vault.SigningLog()
	vault.Close()
	recs, err := led.SerialAssertions(ctx, ledger.AssertionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	units, err := led.Units(ctx, ledger.UnitFilter{})
	if err != nil {
		t.Fatal(err)
	}
	interrupted := map[string]bool{}
	for _, u := range units {
		if u.State == ledger.UnitAborted {
			interrupted[u.LineID+" "+u.HWSerial] = true
		}
	}
	matched, cutOff := 0, 0
	for i := range st.Lines {
		l := &st.Lines[i]
		r := lines.Reconcile(l, st.ID, sim.BrandID, sim.ModelName, logs, recs, units, time.Time{})
		matched += r.Matched
		for _, d := range r.Differences {
			if d.Kind == lines.DiffNotInLedger && interrupted[l.ID+" "+d.Serial] {
				t.Logf("line %s (%s): %s revision %d signed for a unit the kill cut off", l.ID, l.Capture.Method, d.Serial, d.Revision)
				cutOff++
				continue
			}
			t.Errorf("line %s: %s %s (device key %.12s, revision %d): %s", l.ID, d.Kind, d.Serial, d.DeviceKeyID, d.Revision, d.Detail)
		}
	}
	if matched+cutOff != len(logs) || matched != len(recs) {
		t.Errorf("the vault signed %d serials, the ledger holds %d: %d matched, %d cut off by the kill", len(logs), len(recs), matched, cutOff)
	}
	t.Logf("vault signed %d, ledger holds %d, matched %d, serials of units cut off by the kill %d", len(logs), len(recs), matched, cutOff)
}

// checkHeldBy checks, while the demo of args runs in process pid on dir,
// that a second demo on dir is refused naming it, and that status works
// beside it.
func checkHeldBy(t *testing.T, dir string, pid int, args []string) {
	t.Helper()
	code, _, errOut := runCmd(args...)
	if want := fmt.Sprintf("data directory %s in use by pid %d on ", filepath.Join(dir, "data"), pid); code != exitUsage || !strings.Contains(errOut, want) {
		t.Errorf("a second demo on %s: exit %d, want %d and %q:\n%s", dir, code, exitUsage, want, errOut)
	}
	code, out, errOut := runCmd("status", "--config", filepath.Join(dir, "station.yaml"))
	if code != exitOK || !strings.Contains(out, "station sim-bench") {
		t.Errorf("status beside the running demo: exit %d\n%s%s", code, out, errOut)
	}
}

// TestDemoEvidence runs a demo batch and checks what supervisors and QA
// get from it: status, the QA bundle, and exports whose assertions verify
// against the vault's key.
func TestDemoEvidence(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	dir := t.TempDir()
	code, out, errOut := runCmd("demo", "--headless", "--json", "--data", dir, "--boards", "4", "--speed", "50", "--fast-keys")
	if code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, errOut)
	}
	var sum struct {
		Passed, Failed int
		Units          []struct {
			Slot     string `json:"slot"`
			HWSerial string `json:"hardware_serial"`
			Serial   string `json:"serial"`
			Verdict  string `json:"verdict"`
		}
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("--json stdout is not one document: %v\n%s", err, out)
	}
	if sum.Passed != 4 || sum.Failed != 0 || len(sum.Units) != 4 {
		t.Fatalf("summary %+v", sum)
	}
	cfg := filepath.Join(dir, "station.yaml")
	code, out, _ = runCmd("status", "--config", cfg, "--json")
	var st ledger.Stats
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Passed != 4 || st.Yield == nil || *st.Yield != 1 {
		t.Errorf("status: %d %s", code, out)
	}
	bundle := filepath.Join(dir, "qa.tar.gz")
	code, out, _ = runCmd("logs", sum.Units[0].HWSerial, "--config", cfg, "--bundle", bundle)
	if code != 0 || !strings.Contains(out, "serial assertion") || !strings.Contains(out, "console ready") && !strings.Contains(out, "console-ready") {
		t.Errorf("logs: %d\n%s", code, out)
	}
	names := tarNames(t, bundle)
	for _, want := range []string{"unit.json", "console.log", "console.raw", "serial.assertion", "flash.json"} {
		if !names[want] {
			t.Errorf("bundle lacks %s (has %v)", want, names)
		}
	}
	code, out, _ = runCmd("export", "--config", cfg, "--format", "json")
	var rows []exportRow
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 4 {
		t.Fatalf("export: %d %s", code, out)
	}
	ring := serialvault.NewKeyRing()
	if err := ring.AddFile(filepath.Join(dir, "vault-key.pub")); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		a, err := serialvault.Decode([]byte(r.Assertion))
		if err == nil {
			_, err = ring.Verify(a)
		}
		if err != nil || a.HeaderString("serial") != r.Serial {
			t.Errorf("exported assertion of %s: %v", r.HWSerial, err)
		}
	}
	// The demo's image passed the image identity gate: image inspect
	// passes it for each line, and every unit carries its identity.
	var rep imageReport
	for _, line := range []string{"line1", "line2"} {
		code, out, errOut = runCmd("image", "inspect", "--config", cfg, "--line", line, "--json")
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Verdict == nil || !rep.Verdict.Pass {
			t.Fatalf("image inspect --line %s: exit %d\n%s%s", line, code, out, errOut)
		}
	}
	id := rep.Verdict.Identity
	if id.SeedLabel == "" || id.ModelDigest == "" || id.SignKey == "" {
		t.Fatalf("the demo image's identity %+v", id)
	}
	for _, r := range rows {
		if r.ModelDigest != id.ModelDigest || r.SeedLabel != id.SeedLabel || r.ModelSignKey != id.SignKey {
			t.Errorf("unit of %s exported with image %q %q %q, want %+v", r.HWSerial, r.ModelDigest, r.SeedLabel, r.ModelSignKey, id)
		}
	}
	code, out, _ = runCmd("export", "--config", cfg, "--format", "csv")
	if code != 0 || !strings.HasPrefix(out, "unit,batch,line,slot,hardware_serial") || strings.Count(out, "type: serial") != 4 {
		t.Errorf("csv export: %d %s", code, out[:min(len(out), 300)])
	}
	if code, _, _ := runCmd("logs", "NO-SUCH-BOARD", "--config", cfg); code != exitNoMatch {
		t.Errorf("logs of an unknown serial: exit %d, want %d", code, exitNoMatch)
	}
}

func tarNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	out, err := exec.Command("tar", "tzf", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, n := range strings.Fields(string(out)) {
		names[n] = true
	}
	return names
}

// TestDemoTUIOnATerminal runs 'flashstation demo' on a pseudo-terminal as
// an operator would: the bench TUI comes up, the batch completes, b shows
// the batch view, q quits (nothing is working any more) and the summary
// follows.
func TestDemoTUIOnATerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	dir := t.TempDir()
	args := []string{"demo", "--data", dir, "--boards", "4", "--speed", "50", "--fast-keys"}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(args, "\x1f"), "TERM=xterm-256color")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out syncBuffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&out, tty) // until the terminal closes with the program
		close(copied)
	}()
	waitFor := func(what string) {
		t.Helper()
		out.await(t, fmt.Sprintf("%q on the terminal", what), func(s string) bool {
			return strings.Contains(ansi.Strip(s), what)
		})
	}
	defer cmd.Process.Kill() // after a failed wait
	waitFor("FLASHSTATION")
	waitFor("BATCH COMPLETE")
	tty.Write([]byte("b"))
	waitFor("FAILURE PARETO")
	mark := len(out.String())
	tty.Write([]byte("q"))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	limit := time.After(ceiling)
	for asked := false; ; {
		text, more := out.snapshot()
		if !asked && strings.Contains(ansi.Strip(text[mark:]), "quit? y/n") {
			// The TUI learns that the batch is complete on its own
			// channel and may still show the last slot in work until its
			// next refresh: it asks before quitting (the quit guard has
			// its tests in tui). Confirm.
			tty.Write([]byte("y"))
			asked = true
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("exit: %v", err)
			}
		case <-more:
			continue
		case <-limit:
			t.Fatalf("q did not quit:\n%s", ansi.Strip(out.String()))
		}
		break
	}
	// The program is gone: the terminal gives what it wrote, then ends.
	select {
	case <-copied:
	case <-time.After(ceiling):
		t.Fatal("the terminal did not end with the program")
	}
	if !strings.Contains(ansi.Strip(out.String()), "4 passed, 0 failed") {
		t.Errorf("no summary after the TUI; the terminal shows:\n%s", ansi.Strip(out.String()))
	}
}
