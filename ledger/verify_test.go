package ledger_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/ledger"
)

// tamperBench is a ledger with two passed boards, SIM00001 and SIM00002
// (units 1 and 2), each with its serial assertion (rows 1 and 2), and a
// third assertion recorded without a unit (row 3); raw is a plain SQL
// connection to it, as an attacker with the file would have.
type tamperBench struct {
	l   *ledger.Ledger
	raw *sql.DB
	be  backend
}

func newTamperBench(t *testing.T, be backend) tamperBench {
	t.Helper()
	ctx := context.Background()
	l := be.open(t)
	b := seed(t, l)
	for _, serial := range []string{"SIM00001", "SIM00002"} {
		u, err := l.StartUnit(ctx, ledger.Unit{BatchID: b, LineID: "line1", SlotID: "A1", HWSerial: "HW-" + serial})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.UpdateUnit(ctx, u, ledger.UnitProgress{Serial: serial}); err != nil {
			t.Fatal(err)
		}
		a := assertion(serial, 1)
		a.UnitID = u
		if _, _, err := l.RecordSerialAssertion(ctx, a); err != nil {
			t.Fatal(err)
		}
		if err := l.FinishUnit(ctx, u, ledger.UnitPass, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := l.RecordSerialAssertion(ctx, assertion("SIM00003", 1)); err != nil {
		t.Fatal(err)
	}
	return tamperBench{l: l, raw: be.raw(t, l), be: be}
}

// benchHead is the head of bench-01's chain in a report: the ledger's
// chain on a bench, bench-01's on a factory ledger.
func benchHead(be backend, rep ledger.Report) ledger.ChainHead {
	if be.name == "postgres" {
		return rep.Chains["bench-01"]
	}
	return rep.Head
}

// benchSuffix is what a problem's text says of bench-01's rows.
func benchSuffix(be backend) string {
	if be.name == "postgres" {
		return " of station bench-01"
	}
	return ""
}

// pgTamper is the factory ledger's form of the SQLite statements the
// tamper tests run.
var pgTamper = []struct{ sqlite, postgres string }{
	{`PRAGMA foreign_keys = OFF`, `ALTER TABLE serial_assertions DROP CONSTRAINT serial_assertions_unit_id_fkey`},
	{`CREATE TRIGGER units_no_delete BEFORE DELETE ON units WHEN 0 BEGIN SELECT RAISE(ABORT, 'units are never deleted'); END`,
		`CREATE TRIGGER units_no_delete BEFORE DELETE ON units FOR EACH ROW WHEN (false) EXECUTE FUNCTION ledger_refuse('units are never deleted')`},
	{`CREATE TRIGGER serial_assertions_no_delete BEFORE DELETE ON serial_assertions
BEGIN SELECT RAISE(ABORT, 'recorded serial assertions are never deleted'); END`,
		`CREATE TRIGGER serial_assertions_no_delete BEFORE DELETE ON serial_assertions
	FOR EACH ROW EXECUTE FUNCTION ledger_refuse('recorded serial assertions are never deleted')`},
}

var dropTriggerStmt = regexp.MustCompile(`^DROP TRIGGER ((serial_assertions|units|events)_\w+)$`)

// sql is q as the bench's backend takes it.
func (b tamperBench) sql(q string) string {
	if b.be.name != "postgres" {
		return q
	}
	for _, p := range pgTamper {
		if q == p.sqlite {
			return p.postgres
		}
	}
	if m := dropTriggerStmt.FindStringSubmatch(q); m != nil {
		return q + " ON " + m[2]
	}
	n := 0
	return regexp.MustCompile(`\?`).ReplaceAllStringFunc(q, func(string) string { n++; return fmt.Sprintf("$%d", n) })
}

func (b tamperBench) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := b.raw.Exec(b.sql(q), args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (b tamperBench) verify(t *testing.T) ledger.Report {
	t.Helper()
	rep, err := b.l.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestCleanLedgerVerifies(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		b := newTamperBench(t, be)
		rep := b.verify(t)
		if !rep.OK || rep.Err() != nil || len(rep.Problems) != 0 || rep.First != nil {
			t.Fatalf("clean ledger: %+v", rep)
		}
		if bench := benchHead(be, rep); rep.Head.Rows != 3 || bench.Rows != 3 || len(bench.Link) != 64 || rep.Triggers < 6 {
			t.Errorf("report = %+v", rep)
		}
		head, err := b.l.StationChainHead(context.Background(), "bench-01")
		if err != nil || head != benchHead(be, rep) {
			t.Errorf("chain head %+v %v, report's %+v", head, err, rep)
		}
		// The ledger's own late link is allowed once and keeps it verified;
		// linking again elsewhere is refused.
		ctx := context.Background()
		batch, _ := b.l.StartBatch(ctx, ledger.Batch{LineID: "line1"})
		u, err := b.l.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "A2", HWSerial: "HW-SIM00003"})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.l.LinkSerialAssertion(ctx, 3, u); err != nil {
			t.Fatal(err)
		}
		if err := b.l.LinkSerialAssertion(ctx, 3, u); err != nil {
			t.Errorf("linking again to the same unit: %v", err)
		}
		if err := b.l.LinkSerialAssertion(ctx, 3, 1); err == nil || !strings.Contains(err.Error(), "a link is made once") {
			t.Errorf("linking to another unit: %v", err)
		}
		if rep := b.verify(t); !rep.OK {
			t.Errorf("after linking: %v", rep.Err())
		}
	})
}

// TestTriggersRefuseTampering changes each column of a recorded
// assertion, and of a finished unit, with plain SQL: every change is
// refused, as are deletes.
func TestTriggersRefuseTampering(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		b := newTamperBench(t, be)
		for _, tc := range []struct{ name, sql string }{
			{"id", `UPDATE serial_assertions SET id = 99 WHERE id = 1`},
			{"text", `UPDATE serial_assertions SET text = 'forged' WHERE id = 1`},
			{"text_sha256", `UPDATE serial_assertions SET text_sha256 = 'f00d' WHERE id = 1`},
			{"brand_id", `UPDATE serial_assertions SET brand_id = 'evil' WHERE id = 1`},
			{"model", `UPDATE serial_assertions SET model = 'other' WHERE id = 1`},
			{"serial", `UPDATE serial_assertions SET serial = 'SIM00009' WHERE id = 1`},
			{"revision", `UPDATE serial_assertions SET revision = 7 WHERE id = 1`},
			{"device_key_id", `UPDATE serial_assertions SET device_key_id = 'key-other' WHERE id = 1`},
			{"line_id", `UPDATE serial_assertions SET line_id = 'line2' WHERE id = 1`},
			{"unit_id (set)", `UPDATE serial_assertions SET unit_id = 2 WHERE id = 1`},
			{"unit_id (cleared)", `UPDATE serial_assertions SET unit_id = NULL WHERE id = 1`},
			{"via", `UPDATE serial_assertions SET via = 'import' WHERE id = 1`},
			{"duplicate", `UPDATE serial_assertions SET duplicate = 1 WHERE id = 1`},
			{"received_at", `UPDATE serial_assertions SET received_at = '2020-01-01T00:00:00.000Z' WHERE id = 1`},
			{"prev_sha256", `UPDATE serial_assertions SET prev_sha256 = '` + ledger.ZeroLink + `' WHERE id = 2`},
			{"link_sha256", `UPDATE serial_assertions SET link_sha256 = '` + ledger.ZeroLink + `' WHERE id = 1`},
			{"link_sha256 emptied", `UPDATE serial_assertions SET link_sha256 = '' WHERE id = 1`},
			{"swap unit_id", `UPDATE serial_assertions SET unit_id = 3 - unit_id WHERE id IN (1, 2)`},
			{"delete an assertion", `DELETE FROM serial_assertions WHERE id = 2`},
			{"delete the last assertion", `DELETE FROM serial_assertions WHERE id = 3`},
			{"finished unit's serial", `UPDATE units SET serial = 'SIM00009' WHERE id = 1`},
			{"finished unit's state", `UPDATE units SET state = 'fail' WHERE id = 1`},
			{"finished unit's hardware serial", `UPDATE units SET hw_serial = 'HW-X' WHERE id = 2`},
			{"delete a unit", `DELETE FROM units WHERE id = 1`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := b.raw.Exec(b.sql(tc.sql))
				if err == nil || !strings.Contains(err.Error(), "never") {
					t.Errorf("%s: err = %v, want refused by a trigger", tc.sql, err)
				}
			})
		}
		if rep := b.verify(t); !rep.OK {
			t.Errorf("after refused attempts: %v", rep.Err())
		}
		// The one change the ledger makes itself: a unit linked once.
		b.exec(t, `UPDATE serial_assertions SET unit_id = unit_id WHERE id = 1`)
		b.exec(t, `UPDATE serial_assertions SET unit_id = 2 WHERE id = 3`)
		if _, err := b.raw.Exec(b.sql(`UPDATE serial_assertions SET unit_id = 1 WHERE id = 3`)); err == nil {
			t.Error("a linked assertion linked again to another unit")
		}
	})
}

// TestVerifyFindsTampering drops the triggers, then tampers: Verify
// fails naming the row and why.
func TestVerifyFindsTampering(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		forged := "type: serial\nauthority-id: acme\nrevision: 1\nbrand-id: acme\nmodel: acme-gw-armhf\nserial: SIM00002\n\nFORGED\n"
		sum := sha256.Sum256([]byte(forged))
		for _, tc := range []struct {
			name   string
			sql    []string
			row    int64
			why    string
			schema bool // the first problem is the dropped trigger
		}{
			{name: "serial changed", sql: []string{`UPDATE serial_assertions SET serial = 'SIM00009' WHERE id = 2`},
				row: 2, why: "a column was changed"},
			{name: "device key changed", sql: []string{`UPDATE serial_assertions SET device_key_id = 'key-SIM00001' WHERE id = 2`},
				row: 2, why: "a column was changed"},
			{name: "text changed alone", sql: []string{`UPDATE serial_assertions SET text = 'forged' WHERE id = 1`},
				row: 1, why: "text_sha256 is not the SHA-256"},
			{name: "text and text_sha256 changed together", sql: []string{
				`UPDATE serial_assertions SET text = ?, text_sha256 = ? WHERE id = 2`}, row: 2, why: "a column was changed"},
			{name: "a row deleted", sql: []string{`DELETE FROM serial_assertions WHERE id = 2`}, row: 3, why: "row 2 was deleted"},
			{name: "the first row deleted", sql: []string{`DELETE FROM serial_assertions WHERE id = 1`}, row: 2, why: "the chain starts at id 2: row 1 was deleted"},
			{name: "two rows deleted", sql: []string{`DELETE FROM serial_assertions WHERE id < 3`}, row: 3, why: "rows 1-2 were deleted"},
			{name: "unit_id swapped", sql: []string{`UPDATE serial_assertions SET unit_id = 3 - unit_id WHERE id IN (1, 2)`},
				row: 1, why: "linked to unit 2, whose serial is SIM00002"},
			{name: "linked to a unit that does not exist", sql: []string{`PRAGMA foreign_keys = OFF`,
				`UPDATE serial_assertions SET unit_id = 77 WHERE id = 3`}, row: 3, why: "unit 77 does not exist"},
			{name: "link recomputed by hand breaks the next row", sql: []string{
				`UPDATE serial_assertions SET link_sha256 = '` + strings.Repeat("1", 64) + `' WHERE id = 1`}, row: 1, why: "a column was changed"},
			{name: "finished unit's serial changed", sql: []string{`UPDATE units SET serial = 'SIM00009' WHERE id = 2`},
				row: 2, why: "whose serial is SIM00009"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b := newTamperBench(t, be)
				b.exec(t, `DROP TRIGGER serial_assertions_append_only`)
				b.exec(t, `DROP TRIGGER serial_assertions_no_delete`)
				b.exec(t, `DROP TRIGGER units_finished_no_update`)
				for _, q := range tc.sql {
					var args []any
					if strings.Contains(q, "?") {
						args = []any{forged, hex.EncodeToString(sum[:])}
					}
					b.exec(t, q, args...)
				}
				rep := b.verify(t)
				if rep.OK || !errors.Is(rep.Err(), ledger.ErrTampered) {
					t.Fatalf("tampered ledger verifies: %+v", rep)
				}
				// The dropped triggers are listed first; the report and its
				// error name the first bad row.
				if p := rep.Problems[0]; p.Row != 0 || !strings.Contains(p.Why, "trigger serial_assertions_append_only is missing: it was dropped") {
					t.Errorf("first listed problem %v: want the dropped trigger", p)
				}
				row := rep.First
				if row == nil || row.Row != tc.row || row.Table != "serial_assertions" || !strings.Contains(row.Why, tc.why) {
					t.Errorf("first bad row %+v, want row %d: %q\n%+v", row, tc.row, tc.why, rep.Problems)
				}
				if !strings.Contains(rep.Err().Error(), fmt.Sprintf("serial_assertions row %d (serial ", tc.row)) {
					t.Errorf("error %v does not name row %d", rep.Err(), tc.row)
				}
				// The check of the rows a command prints finds it too.
				local, err := b.l.VerifyAssertions(context.Background(), []int64{tc.row})
				if err != nil {
					t.Fatal(err)
				}
				named := false
				for _, p := range local.Problems {
					named = named || p.Row == tc.row
				}
				if local.OK || local.First == nil || local.First.Row == 0 || !named {
					t.Errorf("VerifyAssertions(%d): %+v", tc.row, local)
				}
			})
		}
	})
}

// TestVerifyFindsRewrittenTrigger: a trigger put back with another body
// is not the ledger's.
func TestVerifyFindsRewrittenTrigger(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		b := newTamperBench(t, be)
		b.exec(t, `DROP TRIGGER units_no_delete`)
		b.exec(t, `CREATE TRIGGER units_no_delete BEFORE DELETE ON units WHEN 0 BEGIN SELECT RAISE(ABORT, 'units are never deleted'); END`)
		rep := b.verify(t)
		if rep.OK || rep.First.Row != 0 || !strings.Contains(rep.First.Why, "units_no_delete on units is not the one the ledger wrote") {
			t.Errorf("rewritten trigger: %+v", rep)
		}
	})
}

func TestVerifySignatures(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		b := newTamperBench(t, be)
		rep, err := b.l.Verify(context.Background(), ledger.VerifySignatures(func(text []byte) error {
			if strings.Contains(string(text), "SIM00002") {
				return errors.New("not signed by a brand key")
			}
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK || rep.Signatures != 3 || len(rep.Problems) != 1 || rep.First.Row != 2 || rep.First.Serial != "SIM00002" ||
			!strings.Contains(rep.Err().Error(), "serial_assertions row 2 (serial SIM00002)"+benchSuffix(be)+": signature: not signed by a brand key") {
			t.Errorf("report = %+v (%v)", rep, rep.Err())
		}
	})
}

// TestIdentityMismatchEvidenceVerifies: a unit that failed because the
// board held another identity keeps the board's assertion linked to it.
func TestIdentityMismatchEvidenceVerifies(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l := be.open(t)
		b := seed(t, l)
		u, _ := l.StartUnit(ctx, ledger.Unit{BatchID: b, LineID: "line1", SlotID: "A1", HWSerial: "HW1"})
		if err := l.UpdateUnit(ctx, u, ledger.UnitProgress{Serial: "S1"}); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"S1", "OTHER"} {
			a := assertion(s, 1)
			a.UnitID = u
			if _, _, err := l.RecordSerialAssertion(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.FinishUnit(ctx, u, ledger.UnitFail, "identity-mismatch", "the board holds OTHER"); err != nil {
			t.Fatal(err)
		}
		if rep, err := l.Verify(ctx); err != nil || !rep.OK {
			t.Errorf("identity mismatch evidence: %v %v", rep.Err(), err)
		}
	})
}

// docLink computes a link as README and chain.go document it, apart
// from the ledger's code.
func docLink(t *testing.T, prev string, fields ...string) string {
	t.Helper()
	p, err := hex.DecodeString(prev)
	if err != nil || len(p) != 32 {
		t.Fatalf("prev %q", prev)
	}
	h := sha256.New()
	h.Write(p)
	for _, f := range fields {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

type linkRow struct {
	id                            int64
	textSHA, brand, model, serial string
	revision                      int64
	key, line, via                string
	duplicate                     int64
	received, prev, link          string
}

func readLinkRows(t *testing.T, db *sql.DB) []linkRow {
	t.Helper()
	rows, err := db.Query(`SELECT id, text_sha256, brand_id, model, serial, revision, device_key_id, line_id, via, duplicate,
		received_at, prev_sha256, link_sha256 FROM serial_assertions ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []linkRow
	for rows.Next() {
		var r linkRow
		if err := rows.Scan(&r.id, &r.textSHA, &r.brand, &r.model, &r.serial, &r.revision, &r.key, &r.line, &r.via,
			&r.duplicate, &r.received, &r.prev, &r.link); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func (r linkRow) docLink(t *testing.T) string {
	return docLink(t, r.prev, strconv.FormatInt(r.id, 10), r.textSHA, r.brand, r.model, r.serial,
		strconv.FormatInt(r.revision, 10), r.key, r.line, r.via, strconv.FormatInt(r.duplicate, 10), r.received)
}

// TestChainAsDocumented recomputes the chain from its documentation, then
// plays the careful attacker who knows it: a row changed and its link
// recomputed breaks the link of the next row.
func TestChainAsDocumented(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		b := newTamperBench(t, be)
		prev := ledger.ZeroLink
		for _, r := range readLinkRows(t, b.raw) {
			if r.prev != prev || r.link != r.docLink(t) {
				t.Fatalf("row %d: prev %s link %s, documented %s %s", r.id, r.prev, r.link, prev, r.docLink(t))
			}
			prev = r.link
		}
		b.exec(t, `DROP TRIGGER serial_assertions_append_only`)
		b.exec(t, `UPDATE serial_assertions SET serial = 'SIM00009' WHERE id = 2`)
		r := readLinkRows(t, b.raw)[1]
		b.exec(t, `UPDATE serial_assertions SET link_sha256 = ? WHERE id = 2`, r.docLink(t))
		b.exec(t, `DROP TRIGGER units_finished_no_update`)
		b.exec(t, `UPDATE units SET serial = 'SIM00009' WHERE id = 2`)
		rep := b.verify(t)
		if rep.OK || rep.First.Row != 3 || !strings.Contains(rep.First.Why, "prev_sha256 is not the link of the row before it") {
			t.Errorf("full verify: %+v", rep.First)
		}
		local, err := b.l.VerifyAssertions(context.Background(), []int64{2})
		if err != nil {
			t.Fatal(err)
		}
		if local.OK || local.First.Row != 2 || !strings.Contains(local.First.Why, "row 3 after it does not chain from its link") {
			t.Errorf("VerifyAssertions(2): %+v", local.First)
		}
	})
}

func TestVerifyAssertionsClean(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		b := newTamperBench(t, be)
		rep, err := b.l.VerifyAssertions(context.Background(), []int64{3, 1, 2, 2})
		if err != nil || !rep.OK || rep.Head.Rows != 3 {
			t.Errorf("clean rows: %+v %v", rep, err)
		}
		if rep, _ := b.l.VerifyAssertions(context.Background(), []int64{9}); rep.OK || rep.First.Row != 9 {
			t.Errorf("a missing row: %+v", rep)
		}
		// A row deleted away from the rows checked, the trigger put back as
		// it was: the count finds the gap.
		b.exec(t, `DROP TRIGGER serial_assertions_no_delete`)
		b.exec(t, `DELETE FROM serial_assertions WHERE id = 2`)
		b.exec(t, `CREATE TRIGGER serial_assertions_no_delete BEFORE DELETE ON serial_assertions
BEGIN SELECT RAISE(ABORT, 'recorded serial assertions are never deleted'); END`)
		if be.name == "postgres" {
			// A factory ledger's check of printed rows reads their
			// neighbours only (it holds millions of rows): the row after
			// the deleted one says so, and Verify finds it.
			if rep, err := b.l.VerifyAssertions(context.Background(), []int64{3}); err != nil || rep.OK ||
				!strings.Contains(rep.First.Why, "row 2 before it was deleted") {
				t.Errorf("VerifyAssertions(3) after a delete: %+v %v", rep.First, err)
			}
			if rep, err := b.l.Verify(context.Background()); err != nil || rep.OK || !strings.Contains(rep.Err().Error(), "row 1 is followed by row 3") {
				t.Errorf("Verify after a delete: %+v %v", rep.First, err)
			}
			return
		}
		for _, ids := range [][]int64{{}, {3}} {
			rep, err := b.l.VerifyAssertions(context.Background(), ids)
			if err != nil || rep.OK || rep.First.Row != 2 || !strings.Contains(rep.First.Why, "the row was deleted (2 rows hold ids up to 3)") {
				t.Errorf("VerifyAssertions(%v) after a delete elsewhere: %+v %v", ids, rep.First, err)
			}
		}
	})
}

// oldLedger is a version-2 ledger holding n serial assertions (with
// their true text hashes), as an older station left it.
func oldLedger(tb testing.TB, n int) string {
	tb.Helper()
	ctx := context.Background()
	path := tb.TempDir() + "/old.db"
	if err := ledger.MigrateTo(ctx, path, 2); err != nil {
		tb.Fatal(err)
	}
	db, err := ledger.RawDB(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	for _, q := range []string{`INSERT INTO stations VALUES ('bench', '', '2026-01-01T00:00:00.000Z')`,
		`INSERT INTO lines VALUES ('line1', 'bench', 'Line 1', 'acme', 'gw', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')`} {
		if _, err := tx.Exec(q); err != nil {
			tb.Fatal(err)
		}
	}
	for i := 1; i <= n; i++ {
		text := fmt.Sprintf("type: serial\nserial: S%08d\n\n%s\n", i, strings.Repeat("SIG", 300))
		sum := sha256.Sum256([]byte(text))
		if _, err := tx.Exec(`INSERT INTO serial_assertions(text, text_sha256, brand_id, model, serial, revision, device_key_id,
			line_id, via, received_at) VALUES (?, ?, 'acme', 'gw', ?, 1, ?, 'line1', 'proxy', '2026-01-01T00:00:00.000Z')`,
			text, hex.EncodeToString(sum[:]), fmt.Sprintf("S%08d", i), fmt.Sprintf("key%d", i)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return path
}

// TestMigrationChainsManyRows: version 3 chains an older ledger's rows
// page by page, and the station goes on chaining after them.
func TestMigrationChainsManyRows(t *testing.T) {
	ctx := context.Background()
	l, err := ledger.Open(ctx, oldLedger(t, 2500))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := assertion("NEW-1", 1)
	a.LineID, a.Model = "line1", "gw"
	if id, _, err := l.RecordSerialAssertion(ctx, a); err != nil || id != 2501 {
		t.Fatalf("record after the upgrade: %d %v", id, err)
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK || rep.Head.Rows != 2501 {
		t.Errorf("upgraded ledger: %+v %v", rep.Head, rep.Err())
	}
}

// BenchmarkVerify: the whole ledger's check, per serial assertion, and
// the check of one printed row.
func BenchmarkVerify(b *testing.B) {
	const n = 20000
	ctx := context.Background()
	l, err := ledger.Open(ctx, oldLedger(b, n))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.Run("whole-ledger-20k", func(b *testing.B) {
		for b.Loop() {
			if rep, err := l.Verify(ctx); err != nil || !rep.OK {
				b.Fatal(rep.Err(), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/row")
	})
	b.Run("one-row", func(b *testing.B) {
		for b.Loop() {
			if rep, err := l.VerifyAssertions(ctx, []int64{n / 2}); err != nil || !rep.OK {
				b.Fatal(rep.Err(), err)
			}
		}
	})
}
