package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/ledger/pgtest"
)

// benchProc is one simulated bench running as its own process.
type benchProc struct {
	name, dir string
	cmd       *exec.Cmd
	mu        sync.Mutex
	passes    int
	lines     []string
	changed   chan struct{} // closed at each new line
	done      chan struct{}
}

func (b *benchProc) wait(t *testing.T, what string, ok func(b *benchProc) bool) {
	t.Helper()
	deadline := time.After(ceiling)
	for {
		b.mu.Lock()
		ch, good := b.changed, ok(b)
		b.mu.Unlock()
		if good {
			return
		}
		select {
		case <-ch:
		case <-b.done:
			b.mu.Lock()
			good = ok(b)
			b.mu.Unlock()
			if !good {
				t.Fatalf("%s ended before %s:\n%s", b.name, what, b.output())
			}
			return
		case <-deadline:
			t.Fatalf("%s: waiting for %s:\n%s", b.name, what, b.output())
		}
	}
}

func (b *benchProc) saw(s string) bool {
	for _, l := range b.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func (b *benchProc) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// TestFactoryOfThreeBenches runs three simulated benches as separate
// processes on one factory ledger, stops PostgreSQL mid-batch (the
// benches keep flashing and say what waits), starts it again, stops the
// benches as an operator does, and checks: every unit and serial
// assertion of every bench is in the factory ledger exactly once, with
// each bench's chain; status --ledger is the sum of the benches; and the
// serials bench-3 shares with bench-1 are flagged.
func TestFactoryOfThreeBenches(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	c := pgtest.Start(t)
	root := t.TempDir()
	urlFile := filepath.Join(root, "factory.url")
	if err := os.WriteFile(urlFile, []byte(c.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serials := []string{"B1-", "B2-", "B1-"} // bench-3's boards carry bench-1's serials
	var benches []*benchProc
	for i, prefix := range serials {
		b := &benchProc{name: fmt.Sprintf("bench-%d", i+1), dir: filepath.Join(root, fmt.Sprintf("bench-%d", i+1)),
			changed: make(chan struct{}), done: make(chan struct{})}
		args := []string{"demo", "--headless", "--ledger", "file:" + urlFile, "--station", b.name, "--data", b.dir,
			"--boards", "6", "--speed", "50", "--fast-keys", "--serials", prefix}
		b.cmd = exec.Command(os.Args[0], "-test.run=^$")
		// Board 0 (slot A1) never registers: each batch stays open until
		// its bench is stopped.
		b.cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(args, "\x1f"), holdEnv+"=0")
		out, err := b.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		b.cmd.Stderr = b.cmd.Stdout
		if err := b.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				b.mu.Lock()
				b.lines = append(b.lines, sc.Text())
				if strings.Contains(sc.Text(), " PASS ") {
					b.passes++
				}
				close(b.changed)
				b.changed = make(chan struct{})
				b.mu.Unlock()
			}
			b.cmd.Wait()
			close(b.done)
		}()
		t.Cleanup(func() { b.cmd.Process.Kill(); <-b.done })
		benches = append(benches, b)
	}
	for _, b := range benches {
		b.wait(t, "the factory ledger connected", func(b *benchProc) bool { return b.saw("factory ledger connected") })
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	stoppedAt := map[string]int{}
	for _, b := range benches {
		b.mu.Lock()
		stoppedAt[b.name] = b.passes
		b.mu.Unlock()
	}
	offlinePasses := map[string]int{}
	for _, b := range benches {
		b.wait(t, "offline", func(b *benchProc) bool { return b.saw("factory ledger offline - ") })
		// The bench keeps flashing while the factory ledger is away.
		b.wait(t, "a pass while offline", func(b *benchProc) bool { return b.passes > stoppedAt[b.name] })
		b.mu.Lock()
		offlinePasses[b.name] = b.passes - stoppedAt[b.name]
		b.mu.Unlock()
	}
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, b := range benches {
		b.wait(t, "back", func(b *benchProc) bool { return b.saw("factory ledger back: ") })
		b.wait(t, "every board but the held one passed", func(b *benchProc) bool { return b.passes == 5 })
	}
	// Bench-1 and bench-3 each learn, from the factory ledger, that the
	// other recorded their five serials.
	for _, b := range []*benchProc{benches[0], benches[2]} {
		b.wait(t, "the duplicates flagged", func(b *benchProc) bool {
			return b.saw("factory ledger: 5 of this bench's serials or device keys were recorded by another bench too")
		})
	}
	for _, b := range benches {
		b.cmd.Process.Signal(syscall.SIGINT) // the operator stops the bench
	}
	for _, b := range benches {
		select {
		case <-b.done:
		case <-time.After(ceiling):
			t.Fatalf("%s did not stop:\n%s", b.name, b.output())
		}
	}
	t.Logf("passes while PostgreSQL was stopped: %v", offlinePasses)

	ctx := context.Background()
	fac, err := ledger.OpenFactoryReadOnly(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer fac.Close()
	var sumUnits, sumPassed int
	for _, b := range benches {
		led, err := ledger.OpenReadOnly(ctx, filepath.Join(b.dir, "data", ledger.FileName))
		if err != nil {
			t.Fatal(err)
		}
		local, _ := led.Units(ctx, ledger.UnitFilter{})
		there, _ := fac.Units(ctx, ledger.UnitFilter{StationID: b.name})
		if len(local) != 6 || len(there) != len(local) {
			t.Errorf("%s: %d units at the bench, %d in the factory ledger", b.name, len(local), len(there))
		}
		byUID := map[string]ledger.Unit{}
		for _, u := range there {
			byUID[u.UID] = u
		}
		for _, u := range local {
			f, ok := byUID[u.UID]
			if !ok || f.State != u.State || f.Serial != u.Serial || f.HWSerial != u.HWSerial || f.Reason != u.Reason {
				t.Errorf("%s: unit %s at the bench %+v, in the factory %+v", b.name, u.UID, u, f)
			}
		}
		la, _ := led.SerialAssertions(ctx, ledger.AssertionFilter{})
		fa, _ := fac.SerialAssertions(ctx, ledger.AssertionFilter{StationID: b.name})
		if len(la) < 5 || len(fa) != len(la) {
			t.Errorf("%s: %d serial assertions at the bench, %d in the factory ledger", b.name, len(la), len(fa))
		}
		seqs := map[int64]ledger.SerialAssertion{}
		for _, a := range fa {
			seqs[a.Seq] = a
		}
		for _, a := range la {
			if f, ok := seqs[a.Seq]; !ok || string(f.Text) != string(a.Text) || f.Serial != a.Serial || f.StationID != b.name {
				t.Errorf("%s: assertion %d (serial %s) at the bench, in the factory %+v", b.name, a.Seq, a.Serial, f)
			}
		}
		head, _ := led.ChainHead(ctx)
		rep, err := fac.Verify(ctx)
		if err != nil || !rep.OK || rep.Chains[b.name] != head {
			t.Errorf("%s: factory verify %+v (bench chain %v) %v", b.name, rep, head, err)
		}
		s, _ := led.Stats(ctx, ledger.StatsFilter{})
		sumUnits += s.Units
		sumPassed += s.Passed
		flags, _ := led.FactoryFlags(ctx)
		t.Logf("%s: %d units, %d passed, %d flags from the factory ledger", b.name, s.Units, s.Passed, len(flags))
		if want := map[string]int{"bench-1": 5, "bench-2": 0, "bench-3": 5}[b.name]; len(flags) != want {
			t.Errorf("%s: %d serials flagged at the bench, want %d: %+v", b.name, len(flags), want, flags)
		}
		led.Close()
	}

	// status --ledger is the benches' sum, and names the duplicates.
	rctx, cancel := context.WithTimeout(ctx, ceiling)
	defer cancel()
	var stdout, stderr syncBuffer
	if err := run(rctx, []string{"status", "--ledger", "file:" + urlFile, "--json"}, &stdout, &stderr); err != nil {
		t.Fatalf("status --ledger: %v\n%s", err, stderr.String())
	}
	var rep ledger.FactoryReport
	if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
		t.Fatalf("status --ledger --json: %v\n%s", err, stdout.String())
	}
	if rep.Total.Units != sumUnits || rep.Total.Passed != sumPassed || sumUnits != 18 || sumPassed != 15 {
		t.Errorf("status --ledger: %d units, %d passed; the benches' sum %d, %d", rep.Total.Units, rep.Total.Passed, sumUnits, sumPassed)
	}
	var benchSum int
	for _, f := range rep.Benches {
		benchSum += f.Units
	}
	if benchSum != rep.Total.Units || len(rep.Benches) != 3 {
		t.Errorf("status --ledger: benches %+v do not add up to %d", rep.Benches, rep.Total.Units)
	}
	dupSerials := 0
	for _, d := range rep.Duplicates {
		if d.Kind == "serial" {
			dupSerials++
			if strings.Join(d.Stations, ",") != "bench-1,bench-3" || !strings.Contains(d.Value, "/B1-") {
				t.Errorf("duplicate %+v", d)
			}
		}
	}
	if dupSerials != 5 {
		t.Errorf("%d serials flagged on two benches, want 5 (bench-3's passed boards): %+v", dupSerials, rep.Duplicates)
	}
	var text syncBuffer
	if err := run(rctx, []string{"status", "--ledger", "file:" + urlFile}, &text, &stderr); err != nil ||
		!strings.Contains(text.String(), "RECORDED ON TWO BENCHES") {
		t.Errorf("status --ledger: %v\n%s", err, text.String())
	}
}
