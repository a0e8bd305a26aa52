package ledger_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/ledger"
)

// The image identities of the tests: a UC20+ image with its seed label, a
// UC18 one (no label), and a batch started before the gate.
const (
	testDigest  = "mQx3oCNXzOaHsTl5E8OjAGyBSGl5gD6vOT7iTMC1MxvcqQzn3S9ba6PjBwRqPk3R"
	testSignKey = "Ov2pQ1ltAr_FCGAzoBVv_Us5nTn0DMvl3dgDcjb7VfjDxTjKxH3fp0PlRsXuW3BB"
	testImage   = "6f1ed002ab5595859014ebf0951522d9c0f9e3b0a6d5f5b8b4f2f7d1a3c5e7f9"
)

var identities = []struct {
	name string
	b    ledger.Batch
}{
	{"uc20 with seed label", ledger.Batch{ImageSHA256: testImage, ModelDigest: testDigest, SeedLabel: "20261202", ModelSignKey: testSignKey}},
	{"uc20 other label", ledger.Batch{ImageSHA256: testImage, ModelDigest: testDigest, SeedLabel: "20261203", ModelSignKey: testSignKey}},
	{"uc18 without seed label", ledger.Batch{ImageSHA256: testImage, ModelDigest: testDigest, ModelSignKey: testSignKey}},
	{"other signing key", ledger.Batch{ImageSHA256: testImage, ModelDigest: testDigest, SeedLabel: "20261202", ModelSignKey: "k" + testSignKey[1:]}},
	{"before the gate", ledger.Batch{}},
}

// startIdentityBatch opens a batch on line1 of a seeded ledger with b's
// image identity and a unit in it.
func startIdentityBatch(t *testing.T, l *ledger.Ledger, b ledger.Batch) (batch, unit int64) {
	t.Helper()
	ctx := context.Background()
	b.LineID, b.Operator, b.Planned = "line1", "ana", 2
	batch, err := l.StartBatch(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	unit, err = l.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "A1", HWSerial: "HW-" + b.SeedLabel})
	if err != nil {
		t.Fatal(err)
	}
	return batch, unit
}

func sameIdentity(got, want ledger.Batch) bool {
	return got.ImageSHA256 == want.ImageSHA256 && got.ModelDigest == want.ModelDigest && got.SeedLabel == want.SeedLabel &&
		got.ModelSignKey == want.ModelSignKey
}

// TestBatchImageIdentity: what StartBatch is given is what every reader
// of batches returns, and what a unit evidence shows, before and after the
// batch closes; each identity has its own seal, and the ledger verifies.
func TestBatchImageIdentity(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l := be.open(t)
		seed(t, l)
		seals := map[string]string{}
		for _, tc := range identities {
			t.Run(tc.name, func(t *testing.T) {
				batch, unit := startIdentityBatch(t, l, tc.b)
				got, err := l.Batch(ctx, batch)
				if err != nil || !sameIdentity(got, tc.b) {
					t.Fatalf("Batch(%d) = %+v %v, want the identity of %+v", batch, got, err, tc.b)
				}
				if len(got.ImageSeal) != 64 || got.ImageSeal != ledger.ImageSeal(got) {
					t.Errorf("seal %q, want %q", got.ImageSeal, ledger.ImageSeal(got))
				}
				if other, dup := seals[got.ImageSeal]; dup {
					t.Errorf("identity %q has the seal of %q", tc.name, other)
				}
				seals[got.ImageSeal] = tc.name
				open, err := l.OpenBatches(ctx, "bench-01")
				if err != nil {
					t.Fatal(err)
				}
				found := false
				for _, b := range open {
					if b.ID == batch {
						found = b == got
					}
				}
				if !found {
					t.Errorf("OpenBatches does not return batch %+v: %+v", got, open)
				}
				e, err := l.Evidence(ctx, unit)
				if err != nil {
					t.Fatal(err)
				}
				want := ledger.ImageIdentity{SHA256: tc.b.ImageSHA256, ModelDigest: tc.b.ModelDigest, SeedLabel: tc.b.SeedLabel,
					ModelSignKey: tc.b.ModelSignKey, Seal: got.ImageSeal}
				if e.Image != want {
					t.Errorf("evidence image %+v, want %+v", e.Image, want)
				}
				if err := l.FinishUnit(ctx, unit, ledger.UnitPass, "", ""); err != nil {
					t.Fatal(err)
				}
				if err := l.CloseBatch(ctx, batch, ledger.BatchComplete); err != nil {
					t.Fatal(err)
				}
				if closed, err := l.Batch(ctx, batch); err != nil || closed.State != ledger.BatchClosed || closed.Image() != got.Image() {
					t.Errorf("closed batch %+v %v, want the identity of %+v", closed, err, got)
				}
			})
		}
		if rep, err := l.Verify(ctx); err != nil || !rep.OK || rep.Batches != len(identities)+1 {
			t.Errorf("verify: %+v %v (want %d batch seals checked)", rep, err, len(identities)+1)
		}
	})
}

// TestStartBatchRefusesBadIdentity: an identity the ledger could not
// hold and forward as it is gets an error naming the field, and no batch.
func TestStartBatchRefusesBadIdentity(t *testing.T) {
	ctx := context.Background()
	l := sqliteBackend.open(t)
	seed(t, l)
	for _, tc := range []struct {
		name string
		b    ledger.Batch
		want string
	}{
		{"NUL in the seed label", ledger.Batch{SeedLabel: "2026\x001202"}, "seed label"},
		{"model digest not UTF-8", ledger.Batch{ModelDigest: "\xff\xfe"}, "model digest"},
		{"sign key too long", ledger.Batch{ModelSignKey: strings.Repeat("k", 513)}, "model sign key is 513 bytes long"},
		{"image sha256 not UTF-8", ledger.Batch{ImageSHA256: "\xc3"}, "image sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := l.BatchIDs(ctx)
			tc.b.LineID = "line1"
			if _, err := l.StartBatch(ctx, tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("StartBatch(%+v) = %v, want an error naming %q", tc.b, err, tc.want)
			}
			if after, _ := l.BatchIDs(ctx); len(after) != len(before) {
				t.Errorf("a refused batch was recorded: %v", after)
			}
		})
	}
}

// dropBatchGuard drops the trigger that keeps a batch image, as an
// attacker with the database would.
func dropBatchGuard(t *testing.T, be backend, raw *sql.DB) {
	t.Helper()
	q := `DROP TRIGGER batches_keep_image`
	if be.name == "postgres" {
		q += ` ON batches`
	}
	if _, err := raw.Exec(q); err != nil {
		t.Fatal(err)
	}
}

// bind is q with ? parameters as the backend takes them.
func bind(be backend, q string) string {
	if be.name != "postgres" {
		return q
	}
	n := 0
	var b strings.Builder
	for _, c := range q {
		if c == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// TestBatchImageIdentityGuarded: plain SQL cannot change a recorded
// image identity while the guard is there; closing a batch and naming its
// operator still work.
func TestBatchImageIdentityGuarded(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l := be.open(t)
		seed(t, l)
		b := identities[0].b
		b.LineID = "line1"
		batch, err := l.StartBatch(ctx, b) // no operator yet
		if err != nil {
			t.Fatal(err)
		}
		raw := be.raw(t, l)
		for _, col := range []string{"seed_label", "model_digest", "model_sign_key", "image_sha256", "image_seal"} {
			_, err := raw.Exec(bind(be, `UPDATE batches SET `+col+` = ? WHERE id = ?`), "forged", batch)
			if err == nil || !strings.Contains(err.Error(), "a batch keeps its image identity") {
				t.Errorf("changing %s: %v, want it refused", col, err)
			}
		}
		if err := l.SetBatchOperator(ctx, batch, "bo"); err != nil {
			t.Errorf("set operator: %v", err)
		}
		if err := l.CloseBatch(ctx, batch, ledger.BatchOperator); err != nil {
			t.Errorf("close: %v", err)
		}
		if b, _ := l.Batch(ctx, batch); !sameIdentity(b, identities[0].b) || b.Operator != "bo" {
			t.Errorf("batch after close: %+v", b)
		}
	})
}

// TestVerifyFindsChangedImageIdentity changes a batch image identity past
// the dropped guard: Verify names the batch, and so does the check of
// what a command prints when it is given the batch.
func TestVerifyFindsChangedImageIdentity(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		for _, tc := range []struct {
			name, set string
			old       bool // the batch started before the gate (seed)
			why       string
		}{
			{name: "seed label changed", set: `seed_label = '20250101'`, why: `seed label "20250101"`},
			{name: "seed label removed", set: `seed_label = ''`, why: `seed label ""`},
			{name: "model digest changed", set: `model_digest = 'AAAA'`, why: `model digest "AAAA"`},
			{name: "signing key changed", set: `model_sign_key = 'other-key'`, why: `sign key "other-key"`},
			{name: "image changed", set: `image_sha256 = 'beef'`, why: `image "beef"`},
			{name: "seed label given to a batch from before the gate", set: `seed_label = '20261202'`, old: true, why: `seed label "20261202"`},
			{name: "seal removed", set: `image_seal = ''`, why: "the seal was removed"},
			{name: "seal forged", set: `image_seal = '` + strings.Repeat("0", 64) + `'`, why: "its image identity was changed"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx := context.Background()
				l := be.open(t)
				batch := seed(t, l)
				if !tc.old {
					batch, _ = startIdentityBatch(t, l, identities[0].b)
				}
				if rep, err := l.Verify(ctx); err != nil || !rep.OK {
					t.Fatalf("before: %+v %v", rep, err)
				}
				raw := be.raw(t, l)
				dropBatchGuard(t, be, raw)
				if _, err := raw.Exec(bind(be, `UPDATE batches SET `+tc.set+` WHERE id = ?`), batch); err != nil {
					t.Fatal(err)
				}
				rep, err := l.Verify(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if rep.OK || len(rep.Problems) != 2 || !strings.Contains(rep.Problems[0].Why, "trigger batches_keep_image is missing") {
					t.Fatalf("tampered batch: %+v", rep)
				}
				p := rep.First
				if p == nil || p.Table != "batches" || p.Row != batch || !strings.Contains(p.Why, tc.why) {
					t.Errorf("first problem %+v, want batches row %d: %q", p, batch, tc.why)
				}
				if !strings.Contains(rep.Err().Error(), fmt.Sprintf("batches row %d", batch)) {
					t.Errorf("error %v does not name batch %d", rep.Err(), batch)
				}
				local, err := l.VerifyAssertions(ctx, nil, ledger.VerifyBatches(batch))
				if err != nil {
					t.Fatal(err)
				}
				if local.OK || local.First == nil || local.First.Table != "batches" || local.First.Row != batch {
					t.Errorf("VerifyAssertions with batch %d: %+v", batch, local)
				}
				// Without the batch, only the dropped guard shows.
				other, err := l.VerifyAssertions(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range other.Problems {
					if p.Table == "batches" {
						t.Errorf("VerifyAssertions without batches names one: %v", p)
					}
				}
			})
		}
	})
}

// TestVerifyBatchesNamesDeleted: a batch a command prints that is gone is
// named.
func TestVerifyBatchesNamesDeleted(t *testing.T) {
	ctx := context.Background()
	l := sqliteBackend.open(t)
	seed(t, l)
	rep, err := l.VerifyAssertions(ctx, nil, ledger.VerifyBatches(1, 42))
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Problems) != 1 || rep.First.Row != 42 || rep.First.Why != "the batch was deleted" {
		t.Errorf("report %+v", rep)
	}
}

// TestMigrationSealsOldBatches opens a ledger of schema version 4 holding
// batches (open and closed, with and without an image): after the
// upgrade each reads with its identity empty, the ledger verifies, new
// batches record their identity, and a seed label given later to an old
// batch is found.
func TestMigrationSealsOldBatches(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/old.db"
	if err := ledger.MigrateTo(ctx, path, 4); err != nil {
		t.Fatal(err)
	}
	raw, err := ledger.RawDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`INSERT INTO stations(id, hostname, created_at) VALUES ('bench-01', 'h', '2026-01-01T00:00:00.000Z');
		INSERT INTO lines(id, station_id, name, brand_id, model, created_at, updated_at)
			VALUES ('line1', 'bench-01', 'Line 1', 'acme', 'gw', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
		INSERT INTO batches(id, line_id, operator, planned, image_sha256, state, close_reason, started_at, closed_at, uid, station_id) VALUES
			(1, 'line1', 'ana', 8, 'aaaa', 'closed', 'complete', '2026-01-01T08:00:00.000Z', '2026-01-01T09:00:00.000Z',
				'019b7892-1c00-7001-8001-000000000001', 'bench-01'),
			(2, 'line1', 'bo', 4, '', 'open', '', '2026-01-02T08:00:00.000Z', NULL, '019b7c3e-9400-7002-8002-000000000002', 'bench-01')`); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, want := range []struct {
		id              int64
		operator, image string
	}{{1, "ana", "aaaa"}, {2, "bo", ""}} {
		b, err := l.Batch(ctx, want.id)
		if err != nil || b.Operator != want.operator || b.ImageSHA256 != want.image || b.ModelDigest != "" || b.SeedLabel != "" ||
			b.ModelSignKey != "" || b.ImageSeal != ledger.ImageSeal(b) {
			t.Errorf("batch %d after upgrade: %+v %v", want.id, b, err)
		}
	}
	if open, err := l.OpenBatches(ctx, "bench-01"); err != nil || len(open) != 1 || open[0].ID != 2 {
		t.Errorf("open batches after upgrade: %+v %v", open, err)
	}
	batch, _ := startIdentityBatch(t, l, identities[0].b)
	if b, _ := l.Batch(ctx, batch); !sameIdentity(b, identities[0].b) {
		t.Errorf("new batch after upgrade: %+v", b)
	}
	if rep, err := l.Verify(ctx); err != nil || !rep.OK {
		t.Fatalf("upgraded ledger: %+v %v", rep, err)
	}
	if _, err := raw.Exec(`UPDATE batches SET seed_label = 'x' WHERE id = 1`); err == nil {
		t.Error("an old batch was given a seed label past the guard")
	}
	if _, err := raw.Exec(`DROP TRIGGER batches_keep_image; UPDATE batches SET seed_label = '20261202' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Verify(ctx)
	if err != nil || rep.OK || rep.First == nil || rep.First.Table != "batches" || rep.First.Row != 1 {
		t.Errorf("old batch given a seed label: %+v %v", rep, err)
	}
}

// TestFactoryMigrationSealsOldBatches: a factory ledger of schema version
// 7 holding a batch is sealed by its upgrade with the seal a bench computes
// (ledger_batch_seal agrees with Go), and verifies.
func TestFactoryMigrationSealsOldBatches(t *testing.T) {
	ctx := context.Background()
	c, err := startFactory()
	if err != nil {
		t.Skipf("factory ledger: %v", err)
	}
	url, err := c.CreateDatabase(fmt.Sprintf("old%d", factory.n.Add(1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.MigrateFactoryTo(ctx, url, 7); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`INSERT INTO stations(id, created_at) VALUES ('bench-01', '2026-01-01T00:00:00.000Z');
		INSERT INTO lines(station_id, id, created_at, updated_at) VALUES ('bench-01', 'line1', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
		INSERT INTO batches(uid, station_id, line_id, operator, planned, image_sha256, started_at) VALUES
			('019b7892-1c00-7001-8001-000000000001', 'bench-01', 'line1', 'ana', 8, 'aaaa', '2026-01-01T08:00:00.000Z'),
			('019b7892-1c00-7001-8001-000000000002', 'bench-01', 'line1', 'bo', 8, '', '2026-01-01T08:00:00.000Z')`); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.OpenFactory(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if v, _ := l.Version(ctx); v != ledger.FactorySchemaVersion() {
		t.Fatalf("version %d after upgrade", v)
	}
	ids, err := l.BatchIDs(ctx)
	if err != nil || len(ids) != 2 {
		t.Fatalf("batches after upgrade: %v %v", ids, err)
	}
	for _, id := range ids {
		b, err := l.Batch(ctx, id)
		if err != nil || b.ModelDigest != "" || b.SeedLabel != "" || len(b.ImageSeal) != 64 || b.ImageSeal != ledger.ImageSeal(b) {
			t.Errorf("batch %d after upgrade: %+v %v (the seal a bench computes: %s)", id, b, err, ledger.ImageSeal(b))
		}
	}
	if rep, err := l.Verify(ctx); err != nil || !rep.OK {
		t.Errorf("upgraded factory ledger: %+v %v", rep, err)
	}
}

// TestForwardCarriesImageIdentity: a batch image identity and its seal
// reach the factory ledger as the bench recorded them, the evidence
// of a unit there shows them, the factory ledger seal function agrees,
// and both ledgers verify.
func TestForwardCarriesImageIdentity(t *testing.T) {
	ctx := context.Background()
	fac, facDB := openFactory(t)
	id, err := fac.FactoryID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bench := sqliteBackend.open(t)
	seed(t, bench) // a batch without an identity: forwarded with its empty one
	if _, err := bench.EnableForwarding(ctx, id); err != nil {
		t.Fatal(err)
	}
	want := map[string]ledger.Batch{}
	units := map[string]int64{}
	for _, tc := range identities[:3] {
		batch, u := startIdentityBatch(t, bench, tc.b)
		b, _ := bench.Batch(ctx, batch)
		want[b.UID] = b
		units[b.UID] = u
	}
	drain(t, bench, fac, "bench-01", 1000)
	rows, err := facDB.Query(`SELECT id, uid, image_seal = ledger_batch_seal(uid, station_id, line_id, image_sha256, model_digest,
		seed_label, model_sign_key) FROM batches ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int64
		var uid string
		var agrees bool
		if err := rows.Scan(&id, &uid, &agrees); err != nil {
			t.Fatal(err)
		}
		n++
		if !agrees {
			t.Errorf("batch %s: the factory seal function disagrees with the bench seal", uid)
		}
		w, ok := want[uid]
		if !ok {
			continue
		}
		got, err := fac.Batch(ctx, id)
		if err != nil || got.Image() != w.Image() {
			t.Errorf("batch %s in the factory: %+v %v, want %+v", uid, got.Image(), err, w.Image())
		}
		local, _ := bench.Unit(ctx, units[uid])
		us, err := fac.Units(ctx, ledger.UnitFilter{HWSerial: local.HWSerial, BatchID: id})
		if err != nil || len(us) != 1 {
			t.Fatalf("unit of batch %s in the factory: %+v %v", uid, us, err)
		}
		e, err := fac.Evidence(ctx, us[0].ID)
		if err != nil || e.Image != w.Image() {
			t.Errorf("evidence in the factory: %+v %v, want %+v", e.Image, err, w.Image())
		}
	}
	if n != 4 {
		t.Errorf("%d batches in the factory, want 4", n)
	}
	for name, l := range map[string]*ledger.Ledger{"bench": bench, "factory": fac} {
		if rep, err := l.Verify(ctx); err != nil || !rep.OK {
			t.Errorf("%s verify: %+v %v", name, rep, err)
		}
	}
}

// TestBundleCarriesImageIdentity: the evidence bundle unit.json holds the
// image the unit was flashed with.
func TestBundleCarriesImageIdentity(t *testing.T) {
	ctx := context.Background()
	l := sqliteBackend.open(t)
	seed(t, l)
	for _, tc := range identities {
		t.Run(tc.name, func(t *testing.T) {
			_, u := startIdentityBatch(t, l, tc.b)
			e, err := l.Evidence(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := ledger.WriteBundle(&buf, e); err != nil {
				t.Fatal(err)
			}
			unitJSON, found := bundleFiles(t, buf.Bytes())["unit.json"]
			var doc struct {
				Unit  ledger.Unit `json:"unit"`
				Image map[string]string
			}
			if err := json.Unmarshal([]byte(unitJSON), &doc); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"image_sha256": tc.b.ImageSHA256, "model_digest": tc.b.ModelDigest,
				"seed_label": tc.b.SeedLabel, "model_sign_key": tc.b.ModelSignKey, "image_seal": e.Image.Seal}
			if !found || fmt.Sprint(doc.Image) != fmt.Sprint(want) || doc.Unit.ID != u || len(e.Image.Seal) != 64 {
				t.Errorf("unit.json image %v (unit %d), want %v", doc.Image, doc.Unit.ID, want)
			}
		})
	}
}

// TestImageSealAsDocumented computes the seal of recorded batches from
// its definition (chain.go, README), without the ledger code.
func TestImageSealAsDocumented(t *testing.T) {
	ctx := context.Background()
	l := sqliteBackend.open(t)
	seed(t, l)
	for _, tc := range identities {
		batch, _ := startIdentityBatch(t, l, tc.b)
		b, err := l.Batch(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		var canon []byte
		for _, f := range []string{b.UID, "bench-01", "line1", tc.b.ImageSHA256, tc.b.ModelDigest, tc.b.SeedLabel, tc.b.ModelSignKey} {
			canon = binary.BigEndian.AppendUint64(canon, uint64(len(f)))
			canon = append(canon, f...)
		}
		sum := sha256.Sum256(canon)
		if want := hex.EncodeToString(sum[:]); b.ImageSeal != want {
			t.Errorf("%s: seal %s, want %s", tc.name, b.ImageSeal, want)
		}
	}
}
