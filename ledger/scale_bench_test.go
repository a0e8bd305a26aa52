package ledger_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flashstation/flashstation/ledger"
)

// scaleLedger builds (once, kept in the temp directory) a ledger of
// 1,000,000 units: 100 batches of 10,000, with events, assertions and
// transcripts for every unit, as a station would leave after months.
func scaleLedger(b *testing.B) string {
	path := filepath.Join(os.TempDir(), "flashstation-ledger-1m-v1.db")
	if _, err := os.Stat(path + ".done"); err == nil {
		return path
	}
	os.Remove(path)
	ctx := context.Background()
	l, err := ledger.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	l.Close()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.Logf("generating a 1,000,000-unit ledger in %s (once)...", path)
	start := time.Now()
	mustExec := func(q string, args ...any) {
		if _, err := db.Exec(q, args...); err != nil {
			b.Fatal(err)
		}
	}
	mustExec(`INSERT INTO stations VALUES ('bench', '', '2026-01-01T00:00:00.000Z')`)
	mustExec(`INSERT INTO lines VALUES ('line1', 'bench', 'Line 1', 'acme', 'gw', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')`)
	reasons := []string{"write-error", "kernel-panic", "stage-timeout", "registration-timeout", "unplugged"}
	const batches, perBatch = 100, 10000
	for bi := 1; bi <= batches; bi++ {
		tx, _ := db.Begin()
		tx.Exec(`INSERT INTO batches(id, line_id, operator, planned, state, started_at) VALUES (?, 'line1', 'ana', ?, 'closed', '2026-01-01T00:00:00.000Z')`, bi, perBatch)
		unit, _ := tx.Prepare(`INSERT INTO units(id, batch_id, line_id, slot_id, attempt, hw_serial, serial, state, reason, detail,
			mapped_bytes, written_bytes, flash_ms, verify_ms, boot_ms, started_at, finished_at) VALUES (?, ?, 'line1', ?, 1, ?, ?, ?, ?, '', 1400000000, 1400000000, ?, ?, ?, ?, ?)`)
		event, _ := tx.Prepare(`INSERT INTO events(at, batch_id, unit_id, slot_id, kind, stage, message) VALUES (?, ?, ?, ?, ?, ?, ?)`)
		assertion, _ := tx.Prepare(`INSERT INTO serial_assertions(text, text_sha256, brand_id, model, serial, revision, device_key_id, line_id, unit_id, via, received_at)
			VALUES (?, ?, 'acme', 'gw', ?, 1, ?, 'line1', ?, 'proxy', ?)`)
		for i := 0; i < perBatch; i++ {
			id := (bi-1)*perBatch + i + 1
			hw := fmt.Sprintf("HW%08d", id)
			at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(id) * 5 * time.Second).Format("2006-01-02T15:04:05.000Z")
			state, reason, serial := "pass", "", hw
			if id%17 == 0 {
				state, reason, serial = "fail", reasons[id%len(reasons)], ""
			}
			slot := fmt.Sprintf("S%02d", id%64)
			unit.Exec(id, bi, slot, hw, serial, state, reason, 60000+id%9000, 30000+id%4000, 400000+id%90000, at, at)
			for _, k := range []string{"present", "flash", "install-boot", "run-boot", "console-ready", "verdict"} {
				event.Exec(at, bi, id, slot, "stage", k, k)
			}
			if state == "pass" {
				assertion.Exec("type: serial\nserial: "+hw+"\n", fmt.Sprintf("%064d", id), hw, fmt.Sprintf("key%d", id), id, at)
			}
		}
		unit.Close()
		event.Close()
		assertion.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	mustExec(`ANALYZE`)
	b.Logf("generated in %s", time.Since(start).Round(time.Second))
	os.WriteFile(path+".done", nil, 0o644)
	return path
}

// BenchmarkScale measures the QA and supervisor queries on a
// 1,000,000-unit ledger: a unit's evidence by serial (logs SERIAL), and
// the status of a 10,000-unit batch.
func BenchmarkScale(b *testing.B) {
	path := scaleLedger(b)
	ctx := context.Background()
	l, err := ledger.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.Run("logs-by-serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			serial := fmt.Sprintf("HW%08d", 1+(i*7919)%1000000)
			us, err := l.UnitsBySerial(ctx, serial)
			if err != nil || len(us) != 1 {
				b.Fatalf("%s: %v %v", serial, us, err)
			}
			if _, err := l.Events(ctx, us[0].ID); err != nil {
				b.Fatal(err)
			}
			if _, err := l.SerialAssertions(ctx, ledger.AssertionFilter{UnitID: us[0].ID}); err != nil {
				b.Fatal(err)
			}
			if _, err := l.Transcripts(ctx, us[0].ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("status-of-10k-batch", func(b *testing.B) {
		for b.Loop() {
			s, err := l.Stats(ctx, ledger.StatsFilter{BatchID: 57})
			if err != nil || s.Units != 10000 {
				b.Fatalf("%+v %v", s, err)
			}
		}
	})
}
