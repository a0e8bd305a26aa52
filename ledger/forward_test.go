package ledger_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/ledger/pgtest"
)

// benchRun records n units on bench l (seeded), each with events, a
// serial assertion (serial prefix+i) and a transcript, and finishes them.
func benchRun(t *testing.T, l *ledger.Ledger, batch int64, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		serial := fmt.Sprintf("%s%04d", prefix, i)
		u, err := l.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: fmt.Sprintf("S%d", i%4), HWSerial: "HW-" + serial})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.AppendEvents(ctx, ledger.Event{BatchID: batch, UnitID: u, Kind: "stage", Stage: "flash"},
			ledger.Event{BatchID: batch, UnitID: u, Kind: "stage", Stage: "boot"}); err != nil {
			t.Fatal(err)
		}
		if err := l.UpdateUnit(ctx, u, ledger.UnitProgress{Serial: serial, MappedBytes: 3 << 30, FlashTime: time.Second}); err != nil {
			t.Fatal(err)
		}
		a := assertion(serial, 1)
		a.UnitID = u
		if _, _, err := l.RecordSerialAssertion(ctx, a); err != nil {
			t.Fatal(err)
		}
		if _, err := l.AddTranscript(ctx, ledger.Transcript{UnitID: u, SlotID: "S1", Kind: ledger.TranscriptClean, Path: "t.log", Size: 3}); err != nil {
			t.Fatal(err)
		}
		if err := l.FinishUnit(ctx, u, ledger.UnitPass, "", ""); err != nil {
			t.Fatal(err)
		}
	}
}

// drain forwards until the outbox is empty.
func drain(t *testing.T, bench, fac *ledger.Ledger, station string, chunk int) int {
	t.Helper()
	total := 0
	for range 10000 {
		n, err := bench.Forward(context.Background(), fac, station, chunk)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return total
		}
		total += n
	}
	t.Fatal("the outbox never empties")
	return 0
}

// counts is each table's row count.
func counts(t *testing.T, db *sql.DB) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, tbl := range []string{"stations", "lines", "batches", "units", "events", "serial_assertions", "transcripts"} {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM ` + tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[tbl] = n
	}
	return out
}

func openFactory(t *testing.T) (*ledger.Ledger, *sql.DB) {
	t.Helper()
	fac := postgresBackend.open(t)
	return fac, postgresBackend.raw(t, fac)
}

// TestForwardIsIdempotent forwards a bench's record, then all of it
// again (as after a bench killed between the factory's commit and its
// own): the factory ledger holds every row once, its chain verifies as the
// bench's, and a unit finished later is finished there too.
func TestForwardIsIdempotent(t *testing.T) {
	ctx := context.Background()
	fac, facDB := openFactory(t)
	id, err := fac.FactoryID(ctx)
	if err != nil || len(id) != 36 {
		t.Fatalf("factory id %q %v", id, err)
	}
	bench := sqliteBackend.open(t)
	batch := seed(t, bench)
	benchRun(t, bench, batch, "A", 3) // before forwarding was on
	if n, _ := bench.Backlog(ctx); n != 0 {
		t.Fatalf("a bench without a factory ledger keeps an outbox: %d", n)
	}
	queued, err := bench.EnableForwarding(ctx, id)
	if err != nil || queued == 0 {
		t.Fatalf("enable: %d %v", queued, err)
	}
	if again, err := bench.EnableForwarding(ctx, id); err != nil || again != 0 {
		t.Fatalf("enabling again queued %d (%v)", again, err)
	}
	benchRun(t, bench, batch, "B", 4) // queued by the triggers
	if n, _ := bench.Backlog(ctx); n <= queued {
		t.Fatalf("backlog %d after new rows (queued %d)", n, queued)
	}
	drain(t, bench, fac, "bench-01", 7) // small chunks: rows split across transactions
	want := counts(t, facDB)
	if want["units"] != 7 || want["serial_assertions"] != 7 || want["events"] != 14 || want["transcripts"] != 7 || want["batches"] != 1 {
		t.Fatalf("factory ledger after forwarding: %v", want)
	}
	// Everything again: nothing doubles.
	if _, err := bench.EnableForwarding(ctx, "another-factory"); err != nil {
		t.Fatal(err)
	}
	drain(t, bench, fac, "bench-01", 1000)
	if got := counts(t, facDB); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sent twice: %v, want %v", got, want)
	}
	// A unit running when sent, finished later.
	u, err := bench.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "S9", HWSerial: "HW-LATE"})
	if err != nil {
		t.Fatal(err)
	}
	drain(t, bench, fac, "bench-01", 1000)
	if err := bench.FinishUnit(ctx, u, ledger.UnitFail, "kernel-panic", "Oops"); err != nil {
		t.Fatal(err)
	}
	if err := bench.CloseBatch(ctx, batch, ledger.BatchComplete); err != nil {
		t.Fatal(err)
	}
	drain(t, bench, fac, "bench-01", 1000)
	units, err := fac.Units(ctx, ledger.UnitFilter{HWSerial: "HW-LATE"})
	if err != nil || len(units) != 1 || units[0].State != ledger.UnitFail || units[0].Reason != "kernel-panic" || units[0].StationID != "bench-01" {
		t.Fatalf("late unit in the factory ledger: %+v %v", units, err)
	}
	local, _ := bench.Unit(ctx, u)
	if units[0].UID != local.UID {
		t.Errorf("uid %s in the factory, %s at the bench", units[0].UID, local.UID)
	}
	if b, err := fac.Batch(ctx, units[0].BatchID); err != nil || b.State != ledger.BatchClosed || b.CloseReason != ledger.BatchComplete {
		t.Errorf("closed batch in the factory: %+v %v", b, err)
	}
	// Big numbers survive (3 GiB mapped).
	if us, _ := fac.Units(ctx, ledger.UnitFilter{Serial: "B0001"}); len(us) != 1 || us[0].MappedBytes != 3<<30 {
		t.Errorf("unit B0001 in the factory: %+v", us)
	}
	// The bench's chain, verified in the factory ledger.
	rep, err := fac.Verify(ctx)
	if err != nil || !rep.OK {
		t.Fatalf("factory verify: %+v %v", rep, err)
	}
	head, _ := bench.ChainHead(ctx)
	if rep.Chains["bench-01"] != head {
		t.Errorf("factory holds chain %v, the bench %v", rep.Chains["bench-01"], head)
	}
	// The factory's figures are the bench's.
	bs, _ := bench.Stats(ctx, ledger.StatsFilter{})
	fs, _ := fac.Stats(ctx, ledger.StatsFilter{StationID: "bench-01"})
	if bs.Units != fs.Units || bs.Passed != fs.Passed || bs.Failed != fs.Failed || *bs.Yield != *fs.Yield || fs.Units != 8 {
		t.Errorf("stats: bench %+v, factory %+v", bs, fs)
	}
}

// TestForwardTwoBenches: two benches on one line forward into one factory
// ledger; one serial is recorded on both: it is one duplicate there, and
// each bench learns it.
func TestForwardTwoBenches(t *testing.T) {
	ctx := context.Background()
	fac, facDB := openFactory(t)
	url, _ := factoryURLOf(fac)
	var fws []*ledger.Forwarder
	var benches []*ledger.Ledger
	for i, st := range []string{"bench-01", "bench-02"} {
		b := sqliteBackend.open(t)
		if err := b.EnsureStation(ctx, ledger.Station{ID: st}); err != nil {
			t.Fatal(err)
		}
		if err := b.EnsureLine(ctx, ledger.Line{ID: "line1", StationID: st, BrandID: "acme", Model: "acme-gw-armhf"}); err != nil {
			t.Fatal(err)
		}
		batch, err := b.StartBatch(ctx, ledger.Batch{LineID: "line1", Planned: 4})
		if err != nil {
			t.Fatal(err)
		}
		benchRun(t, b, batch, fmt.Sprintf("S%d-", i), 3)
		benchRun(t, b, batch, "SAME", 1)
		benches = append(benches, b)
		fw := ledger.NewForwarder(b, url, st)
		fws = append(fws, fw)
		runForwarder(t, fw)
	}
	for _, fw := range fws {
		waitStatus(t, fw, "both benches' duplicate flagged", func(s ledger.ForwardStatus) bool {
			return s.Online && s.Backlog == 0 && s.Duplicates >= 2
		})
	}
	flags, err := benches[0].FactoryFlags(ctx)
	if err != nil || len(flags) != 2 || flags[0].OtherStation != "bench-02" || flags[0].Serial != "SAME0000" {
		t.Errorf("bench-01's flags: %+v %v", flags, err)
	}
	// One serial, and its device key (the test's keys follow the serial).
	dups, err := fac.FactoryDuplicates(ctx, "", time.Time{}, time.Time{})
	if err != nil || len(dups) != 2 || dups[0].Kind != "device-key" || dups[0].Value != "key-SAME0000" ||
		dups[1].Kind != "serial" || dups[1].Value != "acme/acme-gw-armhf/SAME0000" ||
		strings.Join(dups[1].Stations, ",") != "bench-01,bench-02" {
		t.Errorf("factory duplicates: %+v %v", dups, err)
	}
	if dups, _ := fac.FactoryDuplicates(ctx, "line1", time.Now().Add(time.Hour), time.Time{}); len(dups) != 0 {
		t.Errorf("duplicates received in the future: %+v", dups)
	}
	if c := counts(t, facDB); c["units"] != 8 || c["serial_assertions"] != 8 || c["stations"] != 2 || c["lines"] != 2 {
		t.Errorf("factory ledger: %v", c)
	}
	rep, err := fac.Verify(ctx)
	if err != nil || !rep.OK || len(rep.Chains) != 2 || rep.Chains["bench-02"].Rows != 4 {
		t.Errorf("factory verify: %+v %v", rep, err)
	}
}

// TestForwardStationClash: a second bench under the same station id is
// refused, keeps its rows, and says why.
func TestForwardStationClash(t *testing.T) {
	ctx := context.Background()
	fac, _ := openFactory(t)
	id, _ := fac.FactoryID(ctx)
	for i := range 2 {
		b := sqliteBackend.open(t)
		batch := seed(t, b)
		benchRun(t, b, batch, fmt.Sprintf("C%d-", i), 2)
		if _, err := b.EnableForwarding(ctx, id); err != nil {
			t.Fatal(err)
		}
		_, err := b.Forward(ctx, fac, "bench-01", 1000)
		if i == 0 && err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if err == nil || !strings.Contains(err.Error(), "two benches share one station id") {
				t.Fatalf("clash: %v", err)
			}
			if n, _ := b.Backlog(ctx); n == 0 {
				t.Error("refused rows left the outbox")
			}
		}
	}
}

func factoryURLOf(l *ledger.Ledger) (string, bool) {
	u, ok := factory.urls.Load(l)
	if !ok {
		return "", false
	}
	return u.(string), true
}

// runForwarder runs fw until the test ends, and waits for it.
func runForwarder(t *testing.T, fw *ledger.Forwarder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("forwarder: %v", err)
		}
	})
}

// waitStatus waits for the forwarder's status to satisfy ok, on its
// change notices (a minute at most: a bound on a hang, not a timing).
func waitStatus(t *testing.T, fw *ledger.Forwarder, what string, ok func(ledger.ForwardStatus) bool) ledger.ForwardStatus {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		ch := fw.Changed()
		if s := fw.Status(); ok(s) {
			return s
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("waiting for %s: status %+v", what, fw.Status())
		}
	}
}

// TestForwarderOffline: the factory ledger stops mid-batch; the bench
// keeps recording, says how much waits, and catches up when it returns,
// every row once.
func TestForwarderOffline(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Start(t)
	url := c.URL + "&password=s3cret-pw" // trust auth ignores it; it must never show
	fac, err := ledger.OpenFactory(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer fac.Close()
	bench := sqliteBackend.open(t)
	batch := seed(t, bench)
	fw := ledger.NewForwarder(bench, url, "bench-01")
	fw.Poll, fw.MaxBackoff = 50*time.Millisecond, 200*time.Millisecond
	runForwarder(t, fw)
	benchRun(t, bench, batch, "ON", 5)
	waitStatus(t, fw, "the first units sent", func(s ledger.ForwardStatus) bool { return s.Online && s.Backlog == 0 && s.Sent > 0 })

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	benchRun(t, bench, batch, "OFF", 7) // the bench keeps working
	backlog, _ := bench.Backlog(ctx)
	st := waitStatus(t, fw, "offline with the backlog", func(s ledger.ForwardStatus) bool { return !s.Online && s.Backlog == backlog })
	if want := fmt.Sprintf("factory ledger offline - %d to send", backlog); st.Header() != want {
		t.Errorf("header %q, want %q", st.Header(), want)
	}
	if strings.Contains(st.Err, "s3cret") || st.Err == "" {
		t.Errorf("offline error %q", st.Err)
	}
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	fw.Kick()
	waitStatus(t, fw, "caught up", func(s ledger.ForwardStatus) bool { return s.Online && s.Backlog == 0 })
	units, err := fac.Units(ctx, ledger.UnitFilter{})
	if err != nil || len(units) != 12 {
		t.Fatalf("factory units after the outage: %d %v", len(units), err)
	}
	as, _ := fac.SerialAssertions(ctx, ledger.AssertionFilter{})
	seen := map[string]int{}
	for _, a := range as {
		seen[a.Serial]++
	}
	if len(as) != 12 || len(seen) != 12 {
		t.Errorf("assertions after the outage: %d rows, %d serials", len(as), len(seen))
	}
	if rep, err := fac.Verify(ctx); err != nil || !rep.OK || rep.Chains["bench-01"].Rows != 12 {
		t.Errorf("factory verify: %+v %v", rep, err)
	}
}

// TestForwardTranscripts: the console transcripts go to the factory
// ledger with the rows, so QA reads them from any bench; a file changed
// since it was recorded is not sent as if it were the record.
func TestForwardTranscripts(t *testing.T) {
	ctx := context.Background()
	fac, _ := openFactory(t)
	id, _ := fac.FactoryID(ctx)
	bench := sqliteBackend.open(t)
	batch := seed(t, bench)
	u, err := bench.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "S1", HWSerial: "HW-T"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	clean := []byte(strings.Repeat("U-Boot 2024.01\nStarting kernel ...\n", 200))
	files := map[string][]byte{ledger.TranscriptClean: clean, ledger.TranscriptRaw: append([]byte("\x1b[0m"), clean...)}
	for kind, b := range files {
		path := filepath.Join(dir, kind+".log")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if _, err := bench.AddTranscript(ctx, ledger.Transcript{UnitID: u, SlotID: "S1", Kind: kind, Path: path,
			Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}); err != nil {
			t.Fatal(err)
		}
	}
	// The raw file changes after it was recorded.
	if err := os.WriteFile(filepath.Join(dir, "raw.log"), []byte("rewritten"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bench.EnableForwarding(ctx, id); err != nil {
		t.Fatal(err)
	}
	drain(t, bench, fac, "bench-01", 1000)
	us, _ := fac.Units(ctx, ledger.UnitFilter{HWSerial: "HW-T"})
	if len(us) != 1 {
		t.Fatalf("units %+v", us)
	}
	e, err := fac.Evidence(ctx, us[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Files[ledger.TranscriptClean].Content; string(got) != string(clean) {
		t.Errorf("clean transcript in the factory ledger: %d bytes, want %d", len(got), len(clean))
	}
	if got := e.Files[ledger.TranscriptRaw].Content; got != nil {
		t.Errorf("a changed file was forwarded: %q", got)
	}
	var buf bytes.Buffer
	if err := ledger.WriteBundle(&buf, e); err != nil {
		t.Fatal(err)
	}
	if got := bundleFiles(t, buf.Bytes())["console.log"]; got != string(clean) {
		t.Errorf("the factory's bundle holds console.log of %d bytes", len(got))
	}
}

// TestForwardBoundsTranscripts: a chunk carries a few transcript files at
// most, so a bench with many big consoles to send never holds them all in
// memory; all of them arrive, in more chunks.
func TestForwardBoundsTranscripts(t *testing.T) {
	ctx := context.Background()
	fac, facDB := openFactory(t)
	id, _ := fac.FactoryID(ctx)
	bench := sqliteBackend.open(t)
	batch := seed(t, bench)
	benchRun(t, bench, batch, "T", 20) // 20 small transcripts among ~200 entries
	u, err := bench.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "S1", HWSerial: "HW-BIG"})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // 20 files recorded at 10 MiB each: a few per chunk
		if _, err := bench.AddTranscript(ctx, ledger.Transcript{UnitID: u, SlotID: "S1", Kind: ledger.TranscriptRaw, Path: "big.raw", Size: 10 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bench.EnableForwarding(ctx, id); err != nil {
		t.Fatal(err)
	}
	var chunks int
	for {
		n, err := bench.Forward(ctx, fac, "bench-01", 100000)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		chunks++
	}
	if c := counts(t, facDB); chunks < 4 || c["transcripts"] != 40 || c["units"] != 21 {
		t.Errorf("%d chunks, factory ledger %v", chunks, c)
	}
}

// TestForwardAllPipelined: ForwardAll sends the outbox as it was, in
// chunks read ahead while the last one is committed, every row once.
func TestForwardAllPipelined(t *testing.T) {
	ctx := context.Background()
	fac, facDB := openFactory(t)
	id, _ := fac.FactoryID(ctx)
	bench := sqliteBackend.open(t)
	batch := seed(t, bench)
	if _, err := bench.EnableForwarding(ctx, id); err != nil {
		t.Fatal(err)
	}
	benchRun(t, bench, batch, "P", 25)
	backlog, _ := bench.Backlog(ctx)
	n, err := bench.ForwardAll(ctx, fac, "bench-01", 7)
	if err != nil || n != backlog {
		t.Fatalf("ForwardAll sent %d of %d: %v", n, backlog, err)
	}
	if left, _ := bench.Backlog(ctx); left != 0 {
		t.Errorf("%d entries left", left)
	}
	if c := counts(t, facDB); c["units"] != 25 || c["events"] != 50 || c["serial_assertions"] != 25 || c["transcripts"] != 25 {
		t.Errorf("factory ledger %v", c)
	}
	if n, err := bench.ForwardAll(ctx, fac, "bench-01", 7); err != nil || n != 0 {
		t.Errorf("an empty outbox: %d %v", n, err)
	}
	if rep, err := fac.Verify(ctx); err != nil || !rep.OK || rep.Chains["bench-01"].Rows != 25 {
		t.Errorf("verify %+v %v", rep, err)
	}
}

// TestForwardConcurrentDuplicates: two benches that send the same serial
// at the same moment still have it flagged (the second forward to commit
// sees the first).
func TestForwardConcurrentDuplicates(t *testing.T) {
	ctx := context.Background()
	fac, _ := openFactory(t)
	id, _ := fac.FactoryID(ctx)
	var benches [2]*ledger.Ledger
	for i := range benches {
		b := sqliteBackend.open(t)
		st := fmt.Sprintf("bench-%d", i+1)
		b.EnsureStation(ctx, ledger.Station{ID: st})
		b.EnsureLine(ctx, ledger.Line{ID: "line1", StationID: st})
		if _, err := b.EnableForwarding(ctx, id); err != nil {
			t.Fatal(err)
		}
		benches[i] = b
	}
	for round := range 5 {
		serial := fmt.Sprintf("RACE%d", round)
		for i, b := range benches {
			a := assertion(serial, 1)
			a.DeviceKeyID = fmt.Sprintf("key-%d-%d", round, i) // only the serial is shared
			if _, _, err := b.RecordSerialAssertion(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, b := range benches {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = b.Forward(ctx, fac, fmt.Sprintf("bench-%d", i+1), 1000)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	dups, err := fac.FactoryDuplicates(ctx, "", time.Time{}, time.Time{})
	if err != nil || len(dups) != 5 {
		t.Fatalf("%d duplicates flagged of 5 sent at once: %+v %v", len(dups), dups, err)
	}
	for _, d := range dups {
		if d.Kind != "serial" || strings.Join(d.Stations, ",") != "bench-1,bench-2" {
			t.Errorf("duplicate %+v", d)
		}
	}
}

// TestForwardHostileBench: what a bench's ledger may hold never stops
// its forwarding for good, and never blocks it: a FIFO where a transcript
// was, a station renamed after its first batches, a planned count over
// 2^31, a NUL and invalid UTF-8 in texts.
func TestForwardHostileBench(t *testing.T) {
	ctx := context.Background()
	fac, facDB := openFactory(t)
	id, _ := fac.FactoryID(ctx)
	bench := sqliteBackend.open(t)
	batch := seed(t, bench) // station bench-01
	u, err := bench.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "S\x001", HWSerial: "HW-\xff-NUL\x00"})
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "console.log")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bench.AddTranscript(ctx, ledger.Transcript{UnitID: u, SlotID: "S1", Kind: ledger.TranscriptClean, Path: fifo,
		Size: 10, SHA256: strings.Repeat("ab", 32)}); err != nil {
		t.Fatal(err)
	}
	if err := bench.FinishUnit(ctx, u, ledger.UnitFail, "write-error", "detail with a NUL \x00 and \xfe"); err != nil {
		t.Fatal(err)
	}
	// The station is renamed; its new batch plans more than an int holds.
	bench.EnsureStation(ctx, ledger.Station{ID: "bench-01b"})
	bench.EnsureLine(ctx, ledger.Line{ID: "line1", StationID: "bench-01b"})
	if _, err := bench.StartBatch(ctx, ledger.Batch{LineID: "line1", Planned: 3_000_000_000, Operator: "ana\x00"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bench.EnableForwarding(ctx, id); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := bench.ForwardAll(ctx, fac, "bench-01b", 1000); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("forward: %v", err)
		}
	case <-time.After(time.Minute): // a bound on a hang
		t.Fatal("the forward blocked on the FIFO")
	}
	if c := counts(t, facDB); c["batches"] != 2 || c["units"] != 1 || c["transcripts"] != 1 {
		t.Errorf("factory ledger %v", c)
	}
	us, _ := fac.Units(ctx, ledger.UnitFilter{})
	if len(us) != 1 || us[0].StationID != "bench-01" || !strings.Contains(us[0].Detail, "detail with a NUL") {
		t.Errorf("units %+v", us)
	}
}

// TestFactorySecretsStayOut: the factory ledger's password never shows,
// whatever form the URL takes.
func TestFactorySecretsStayOut(t *testing.T) {
	for _, u := range []string{"host=db user=bench password=ledger dbname=flashstation",
		"postgres://bench@db/flashstation?sslpassword=ledger", "postgres://bench:ledger@db/flashstation"} {
		if got := ledger.RedactURL(u); strings.Contains(got, "ledger") && !strings.HasSuffix(got, "/flashstation") {
			t.Errorf("RedactURL(%q) = %q", u, got)
		}
		if strings.Contains(ledger.RedactURL(u), "password=ledger") || strings.Contains(ledger.RedactURL(u), ":ledger@") {
			t.Errorf("RedactURL(%q) shows the password: %q", u, ledger.RedactURL(u))
		}
	}
	if ledger.URLHasPassword("postgres://bench@db/flashstation") || !ledger.URLHasPassword("postgres://b:p@db/f") ||
		!ledger.URLHasPassword("postgres://b@db/f?password=p") {
		t.Error("URLHasPassword")
	}
}
