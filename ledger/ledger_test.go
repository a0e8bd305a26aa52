package ledger_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flashstation/flashstation/ledger"
)

func openTemp(t *testing.T) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(context.Background(), filepath.Join(t.TempDir(), ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// seed records a station, a line and an open batch.
func seed(t *testing.T, l *ledger.Ledger) int64 {
	t.Helper()
	ctx := context.Background()
	if err := l.EnsureStation(ctx, ledger.Station{ID: "bench-01", Hostname: "h"}); err != nil {
		t.Fatal(err)
	}
	if err := l.EnsureLine(ctx, ledger.Line{ID: "line1", StationID: "bench-01", Name: "Line 1", BrandID: "acme", Model: "acme-gw-armhf"}); err != nil {
		t.Fatal(err)
	}
	id, err := l.StartBatch(ctx, ledger.Batch{LineID: "line1", Operator: "ana", Planned: 8})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func assertion(serial string, rev int) ledger.SerialAssertion {
	return ledger.SerialAssertion{
		Text:        []byte(fmt.Sprintf("type: serial\nauthority-id: acme\nrevision: %d\nbrand-id: acme\nmodel: acme-gw-armhf\nserial: %s\n\nSIG\n", rev, serial)),
		BrandID:     "acme",
		Model:       "acme-gw-armhf",
		Serial:      serial,
		Revision:    rev,
		DeviceKeyID: "key-" + serial,
		LineID:      "line1",
		Via:         ledger.ViaProxy,
	}
}

func TestUnitLifecycle(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l := be.open(t)
		batch := seed(t, l)
		u1, err := l.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "A1", HWSerial: "HW1", Stage: "flash"})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.UpdateUnit(ctx, u1, ledger.UnitProgress{MappedBytes: 100, WrittenBytes: 100, FlashTime: 1500 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		if err := l.UpdateUnit(ctx, u1, ledger.UnitProgress{Stage: "boot", Serial: "acme-1"}); err != nil {
			t.Fatal(err)
		}
		if err := l.FinishUnit(ctx, u1, ledger.UnitFail, "boot-timeout", "no console output after 30 s"); err != nil {
			t.Fatal(err)
		}
		if err := l.FinishUnit(ctx, u1, ledger.UnitPass, "", ""); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("finishing twice: err = %v", err)
		}
		if err := l.FinishUnit(ctx, u1, "maybe", "", ""); err == nil {
			t.Error("bad verdict accepted")
		}
		// The same board again: attempt 2.
		u2, err := l.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "A2", HWSerial: "HW1"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.Unit(ctx, u1)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != ledger.UnitFail || got.Reason != "boot-timeout" || got.Stage != "boot" || got.MappedBytes != 100 ||
			got.FlashTime != 1500*time.Millisecond || got.Serial != "acme-1" || got.HWSerial != "HW1" || got.FinishedAt.IsZero() {
			t.Errorf("unit 1 = %+v", got)
		}
		second, _ := l.Unit(ctx, u2)
		if second.Attempt != 2 || second.State != ledger.UnitRunning {
			t.Errorf("unit 2 = %+v", second)
		}
		byPrefix, err := l.Units(ctx, ledger.UnitFilter{SerialPrefix: "acme"})
		if err != nil || len(byPrefix) != 1 || byPrefix[0].ID != u1 {
			t.Errorf("prefix search = %v, %v", byPrefix, err)
		}
		if us, _ := l.Units(ctx, ledger.UnitFilter{SerialPrefix: "a%"}); len(us) != 0 {
			t.Errorf("LIKE wildcard not escaped: %v", us)
		}
		// Another station's restart touches none of this one's units.
		if ids, err := l.InterruptRunning(ctx, "bench-02", "station-restart", "another station restarted"); err != nil || len(ids) != 0 {
			t.Errorf("another station interrupted %v, %v", ids, err)
		}
		ids, err := l.InterruptRunning(ctx, "bench-01", "station-restart", "station restarted mid-batch")
		if err != nil || len(ids) != 1 || ids[0] != u2 {
			t.Errorf("interrupted = %v, %v", ids, err)
		}
		second, _ = l.Unit(ctx, u2)
		if second.State != ledger.UnitAborted || second.Reason != "station-restart" {
			t.Errorf("unit 2 after restart = %+v", second)
		}
		if _, err := l.Unit(ctx, 999); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("missing unit: %v", err)
		}
	})
}

func TestBatches(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l := be.open(t)
		b := seed(t, l)
		open, err := l.OpenBatches(ctx, "bench-01")
		if err != nil || len(open) != 1 || open[0].ID != b || open[0].Operator != "ana" || open[0].Planned != 8 {
			t.Fatalf("open batches = %+v, %v", open, err)
		}
		if other, err := l.OpenBatches(ctx, "bench-02"); err != nil || len(other) != 0 {
			t.Errorf("another station's open batches = %+v, %v", other, err)
		}
		if err := l.CloseBatch(ctx, b, "tired"); err == nil {
			t.Error("closed for no known reason")
		}
		if err := l.CloseBatch(ctx, b, ledger.BatchComplete); err != nil {
			t.Fatal(err)
		}
		if err := l.CloseBatch(ctx, b, ledger.BatchStopped); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("closing twice: %v", err)
		}
		got, err := l.Batch(ctx, b)
		if err != nil || got.State != ledger.BatchClosed || got.CloseReason != ledger.BatchComplete || got.ClosedAt.IsZero() {
			t.Errorf("batch = %+v, %v", got, err)
		}
		if _, err := l.StartBatch(ctx, ledger.Batch{LineID: "no-such-line"}); err == nil {
			t.Error("batch on an unknown line accepted")
		}
	})
}

func TestEventsAreAppendOnly(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l := be.open(t)
		b := seed(t, l)
		u, _ := l.StartUnit(ctx, ledger.Unit{BatchID: b, LineID: "line1", SlotID: "A1"})
		at := time.Date(2026, 11, 28, 10, 0, 0, 123e6, time.UTC)
		err := l.AppendEvents(ctx,
			ledger.Event{At: at, BatchID: b, UnitID: u, SlotID: "A1", Kind: "stage", Stage: "flash", Message: "flashing"},
			ledger.Event{BatchID: b, UnitID: u, SlotID: "A1", Kind: "progress", Data: []byte(`{"bytes":4096}`)},
		)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.AppendEvents(ctx, ledger.Event{Kind: "x", Data: []byte("{not json")}); err == nil {
			t.Error("invalid JSON data accepted")
		}
		evs, err := l.Events(ctx, u)
		if err != nil || len(evs) != 2 {
			t.Fatalf("events = %v, %v", evs, err)
		}
		if !evs[0].At.Equal(at) || evs[0].Stage != "flash" || string(evs[1].Data) != `{"bytes":4096}` {
			t.Errorf("events = %+v", evs)
		}
		db := be.raw(t, l)
		if _, err := db.Exec(`UPDATE events SET message = 'x'`); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("update of events: %v", err)
		}
		if _, err := db.Exec(`DELETE FROM events`); err == nil {
			t.Error("delete of events allowed")
		}
		if _, err := db.Exec(`DELETE FROM serial_assertions`); err != nil {
			t.Errorf("delete on empty table: %v", err)
		}
	})
}

func TestRecordSerialAssertion(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l := be.open(t)
		b := seed(t, l)
		u, _ := l.StartUnit(ctx, ledger.Unit{BatchID: b, LineID: "line1", SlotID: "A1", HWSerial: "S1"})
		a := assertion("S1", 1)
		id, created, err := l.RecordSerialAssertion(ctx, a)
		if err != nil || !created {
			t.Fatalf("record: %v %v", created, err)
		}
		// The device retried: the same text again is not a new record, and
		// the unit learned later is linked.
		a.UnitID = u
		id2, created, err := l.RecordSerialAssertion(ctx, a)
		if err != nil || created || id2 != id {
			t.Fatalf("second record: id %d created %v err %v", id2, created, err)
		}
		dup := assertion("S1", 2)
		dup.Duplicate = true
		if _, created, err := l.RecordSerialAssertion(ctx, dup); err != nil || !created {
			t.Fatalf("revision 2: %v %v", created, err)
		}
		all, err := l.SerialAssertions(ctx, ledger.AssertionFilter{Serial: "S1"})
		if err != nil || len(all) != 2 {
			t.Fatalf("assertions = %v, %v", all, err)
		}
		if string(all[0].Text) != string(assertion("S1", 1).Text) || all[0].UnitID != u || all[0].Revision != 1 || all[0].Duplicate {
			t.Errorf("first = %+v", all[0])
		}
		if !all[1].Duplicate || all[1].Revision != 2 || all[1].UnitID != 0 {
			t.Errorf("second = %+v", all[1])
		}
		unlinked, _ := l.SerialAssertions(ctx, ledger.AssertionFilter{Unlinked: true})
		if len(unlinked) != 1 || unlinked[0].Revision != 2 {
			t.Errorf("unlinked = %+v", unlinked)
		}
		if err := l.LinkSerialAssertion(ctx, unlinked[0].ID, u); err != nil {
			t.Fatal(err)
		}
		if byUnit, _ := l.SerialAssertions(ctx, ledger.AssertionFilter{UnitID: u}); len(byUnit) != 2 {
			t.Errorf("by unit = %d", len(byUnit))
		}
		if later, _ := l.SerialAssertions(ctx, ledger.AssertionFilter{Since: time.Now().Add(time.Hour)}); len(later) != 0 {
			t.Errorf("since filter: %d", len(later))
		}
		bad := assertion("S2", 1)
		bad.DeviceKeyID = ""
		if _, _, err := l.RecordSerialAssertion(ctx, bad); err == nil {
			t.Error("assertion without device key accepted")
		}
		bad = assertion("S3", 1)
		bad.Via = "pigeon"
		if _, _, err := l.RecordSerialAssertion(ctx, bad); err == nil {
			t.Error("unknown source accepted")
		}
		db := be.raw(t, l)
		if _, err := db.Exec(`UPDATE serial_assertions SET text = 'forged'`); err == nil {
			t.Error("assertion text changed")
		}
		if _, err := db.Exec(`DELETE FROM serial_assertions`); err == nil {
			t.Error("assertions deleted")
		}
	})
}

func TestTranscripts(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l := be.open(t)
		b := seed(t, l)
		u, _ := l.StartUnit(ctx, ledger.Unit{BatchID: b, LineID: "line1", SlotID: "A1"})
		if _, err := l.AddTranscript(ctx, ledger.Transcript{UnitID: u, SlotID: "A1", Kind: ledger.TranscriptRaw, Path: "t/1.raw", Size: 5, SHA256: "ab"}); err != nil {
			t.Fatal(err)
		}
		if _, err := l.AddTranscript(ctx, ledger.Transcript{UnitID: u, Kind: "video", Path: "x"}); err == nil {
			t.Error("unknown kind accepted")
		}
		ts, err := l.Transcripts(ctx, u)
		if err != nil || len(ts) != 1 || ts[0].Path != "t/1.raw" || ts[0].Size != 5 {
			t.Errorf("transcripts = %+v, %v", ts, err)
		}
	})
}

// schema returns the normalized schema of a database.
func schema(t *testing.T, path string) string {
	t.Helper()
	db, err := ledger.RawDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT type, name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var parts []string
	for rows.Next() {
		var typ, name, sql string
		if err := rows.Scan(&typ, &name, &sql); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, typ+" "+name+": "+strings.Join(strings.Fields(sql), " "))
	}
	sort.Strings(parts)
	return strings.Join(parts, "\n")
}

// TestMigrations upgrades from an empty file and from every earlier schema
// version holding that version's fixture data, and checks that the result
// equals a fresh ledger and keeps the data.
func TestMigrations(t *testing.T) {
	ctx := context.Background()
	latest := ledger.SchemaVersion()
	if latest < 1 {
		t.Fatal("no migrations")
	}
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	l, err := ledger.Open(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := l.Version(ctx); v != latest {
		t.Fatalf("fresh version %d, want %d", v, latest)
	}
	l.Close()
	want := schema(t, fresh)
	if !strings.Contains(want, "table serial_assertions") {
		t.Fatalf("schema lacks serial_assertions:\n%s", want)
	}

	for from := 0; from < latest; from++ {
		t.Run(fmt.Sprintf("from-v%d", from), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "old.db")
			if err := ledger.MigrateTo(ctx, path, from); err != nil {
				t.Fatal(err)
			}
			if from > 0 {
				fixture, err := os.ReadFile(fmt.Sprintf("testdata/fixtures/v%d.sql", from))
				if err != nil {
					t.Fatalf("every schema version needs a fixture: %v", err)
				}
				db, _ := ledger.RawDB(path)
				if _, err := db.Exec(string(fixture)); err != nil {
					t.Fatalf("fixture v%d: %v", from, err)
				}
				db.Close()
			}
			l, err := ledger.Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if v, _ := l.Version(ctx); v != latest {
				t.Errorf("version %d after upgrade, want %d", v, latest)
			}
			if got := schema(t, path); got != want {
				t.Errorf("schema after upgrade from v%d differs from a fresh ledger:\n%s\n---\n%s", from, got, want)
			}
			if from > 0 {
				as, err := l.SerialAssertions(ctx, ledger.AssertionFilter{})
				if err != nil || len(as) != 1 || as[0].Serial != "acme-0001" {
					t.Errorf("fixture assertion lost: %+v %v", as, err)
				}
				u, err := l.Unit(ctx, 1)
				if err != nil || u.HWSerial != "HW0001" || u.State != ledger.UnitPass {
					t.Errorf("fixture unit lost: %+v %v", u, err)
				}
				// Version 2: an interrupted unit is aborted, its references kept.
				u, err = l.Unit(ctx, 2)
				if err != nil || u.State != ledger.UnitAborted || u.Reason != "interrupted" {
					t.Errorf("fixture unit 2 after upgrade: %+v %v", u, err)
				}
				// A station fault written as fail by version 1 is an error; a
				// board's fault stays a fail.
				if u, err := l.Unit(ctx, 3); err != nil || u.State != ledger.UnitError {
					t.Errorf("fixture unit 3 (storage-error) after upgrade: %+v %v", u, err)
				}
				if u, err := l.Unit(ctx, 4); err != nil || u.State != ledger.UnitFail {
					t.Errorf("fixture unit 4 (kernel-panic) after upgrade: %+v %v", u, err)
				}
				if ts, err := l.Transcripts(ctx, 1); err != nil || len(ts) != 1 {
					t.Errorf("fixture transcript lost: %+v %v", ts, err)
				}
				// Version 5: a batch started before the image identity gate
				// reads with its identity empty, sealed as it was recorded.
				b, err := l.Batch(ctx, 1)
				if err != nil || b.Operator != "ana" || b.Planned != 8 || b.ModelDigest != "" || b.SeedLabel != "" ||
					b.ModelSignKey != "" || len(b.ImageSeal) != 64 {
					t.Errorf("fixture batch after upgrade: %+v %v", b, err)
				}
				if from == 4 && b.ImageSHA256 != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
					t.Errorf("fixture batch lost its image: %+v", b)
				}
				if open, err := l.OpenBatches(ctx, "bench-01"); err != nil || len(open) != 1 || open[0] != b {
					t.Errorf("open batches after upgrade: %+v %v, want %+v", open, err, b)
				}
				// Version 4: every row has its station and a UUIDv7 of its
				// own time.
				db, _ := ledger.RawDB(path)
				for _, c := range []struct{ table, time string }{{"batches", "started_at"}, {"units", "started_at"},
					{"events", "at"}, {"serial_assertions", "received_at"}, {"transcripts", "created_at"}} {
					rows, err := db.Query(`SELECT uid, station_id, ` + c.time + ` FROM ` + c.table)
					if err != nil {
						t.Fatal(err)
					}
					seen := map[string]bool{}
					for rows.Next() {
						var uid, station, at string
						if err := rows.Scan(&uid, &station, &at); err != nil {
							t.Fatal(err)
						}
						ut, ok := ledger.UIDTime(uid)
						if want, _ := time.Parse(time.RFC3339, at); !ok || !ut.Equal(want) || seen[uid] {
							t.Errorf("%s: uid %q (time %v) for a row of %s", c.table, uid, ut, at)
						}
						seen[uid] = true
						if station != "bench-01" {
							t.Errorf("%s: station %q after upgrade, want bench-01", c.table, station)
						}
					}
					rows.Close()
					if len(seen) == 0 {
						t.Errorf("%s: no rows", c.table)
					}
				}
				db.Close()
				// Version 3 chained the rows already there: the chain holds,
				// and version 1's fixture keeps its false text hash, which
				// Verify names.
				rep, err := l.Verify(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if rep.Head.Rows != 1 || rep.Head.Link == ledger.ZeroLink {
					t.Errorf("chain head after upgrade: %+v", rep.Head)
				}
				switch {
				case from == 1 && (rep.OK || len(rep.Problems) != 1 || rep.First.Row != 1 || !strings.Contains(rep.First.Why, "text_sha256")):
					t.Errorf("v1 fixture's false text hash: %+v", rep)
				case from > 1 && !rep.OK:
					t.Errorf("upgraded ledger does not verify: %v", rep.Err())
				}
			}
		})
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "new.db")
	l, err := ledger.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	db, _ := ledger.RawDB(path)
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", ledger.SchemaVersion()+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := ledger.Open(ctx, path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("newer schema: err = %v", err)
	}
}

func TestWALMode(t *testing.T) {
	l := openTemp(t)
	db, _ := ledger.RawDB(l.Path())
	defer db.Close()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v", mode, err)
	}
}

// TestConcurrentWriters runs 32 goroutines writing every kind of record at
// once, plus a second handle on the same file as another process would:
// none may fail with "database is locked".
func TestConcurrentWriters(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l := be.open(t)
		b := seed(t, l)
		other := be.reopen(t, l)
		const goroutines, each = 32, 20
		var wg sync.WaitGroup
		errs := make(chan error, goroutines*each)
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				led := l
				if g%4 == 3 {
					led = other
				}
				slot := fmt.Sprintf("S%02d", g)
				for i := range each {
					u, err := led.StartUnit(ctx, ledger.Unit{BatchID: b, LineID: "line1", SlotID: slot, HWSerial: fmt.Sprintf("HW-%d-%d", g, i)})
					if err != nil {
						errs <- err
						return
					}
					if err := led.AppendEvents(ctx, ledger.Event{BatchID: b, UnitID: u, SlotID: slot, Kind: "stage", Stage: "flash"}); err != nil {
						errs <- err
					}
					a := assertion(fmt.Sprintf("SER-%d-%d", g, i), 1)
					a.UnitID = u
					if _, _, err := led.RecordSerialAssertion(ctx, a); err != nil {
						errs <- err
					}
					if err := led.FinishUnit(ctx, u, ledger.UnitPass, "", ""); err != nil {
						errs <- err
					}
					if _, err := led.Units(ctx, ledger.UnitFilter{BatchID: b, Limit: 5}); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		as, err := l.SerialAssertions(ctx, ledger.AssertionFilter{})
		if err != nil || len(as) != goroutines*each {
			t.Errorf("%d assertions recorded, want %d (%v)", len(as), goroutines*each, err)
		}
		us, _ := l.Units(ctx, ledger.UnitFilter{State: ledger.UnitPass})
		if len(us) != goroutines*each {
			t.Errorf("%d units passed, want %d", len(us), goroutines*each)
		}
	})
}

const crashChildEnv = "FLASHSTATION_LEDGER_CRASH_CHILD"

// TestMain lets the test binary act as the child process of the crash test.
func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	code := m.Run()
	stopFactory()
	stopScaleFactory()
	os.Exit(code)
}

// crashChild records assertions forever, printing each serial once its
// record call returned, until it is killed.
func crashChild(path string) {
	ctx := context.Background()
	l, err := ledger.Open(ctx, path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	_ = l.EnsureStation(ctx, ledger.Station{ID: "bench-01"})
	_ = l.EnsureLine(ctx, ledger.Line{ID: "line1", StationID: "bench-01"})
	b, _ := l.StartBatch(ctx, ledger.Batch{LineID: "line1"})
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				serial := fmt.Sprintf("%sW%d-%06d", os.Getenv("FLASHSTATION_LEDGER_CRASH_ROUND"), w, i)
				// Other writes interleave, as in a running station.
				_ = l.AppendEvents(ctx, ledger.Event{BatchID: b, Kind: "log", Message: serial})
				if _, _, err := l.RecordSerialAssertion(ctx, assertion(serial, 1)); err != nil {
					fmt.Println("error", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Println("recorded", serial)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestSIGKILLKeepsRecordedAssertions kills a child process while it records
// assertions and checks that the ledger opens cleanly and holds every
// assertion whose record call returned.
func TestSIGKILLKeepsRecordedAssertions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), ledger.FileName)
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, fmt.Sprintf("FLASHSTATION_LEDGER_CRASH_ROUND=R%d", round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var acked []string
		sc := bufio.NewScanner(out)
		killAt := 150 + 50*round
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "error") {
				t.Fatalf("child: %s", line)
			}
			if s, ok := strings.CutPrefix(line, "recorded "); ok {
				acked = append(acked, s)
			}
			if len(acked) == killAt {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		_ = cmd.Wait()
		if len(acked) < killAt {
			t.Fatalf("child stopped after %d records", len(acked))
		}

		ctx := context.Background()
		l, err := ledger.Open(ctx, path)
		if err != nil {
			t.Fatalf("round %d: ledger does not open after SIGKILL: %v", round, err)
		}
		if err := l.Check(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		as, err := l.SerialAssertions(ctx, ledger.AssertionFilter{})
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, a := range as {
			have[a.Serial] = true
		}
		for _, s := range acked {
			if !have[s] {
				t.Errorf("round %d: assertion %s was acknowledged but is not in the ledger", round, s)
			}
		}
		t.Logf("round %d: %d acknowledged, %d in ledger", round, len(acked), len(as))
		l.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notADB := filepath.Join(dir, "garbage.db")
	os.WriteFile(notADB, []byte(strconv.Quote("this is not a database")+strings.Repeat("x", 5000)), 0o600)
	if _, err := ledger.Open(context.Background(), notADB); err == nil {
		t.Error("garbage file opened as a ledger")
	}
}
