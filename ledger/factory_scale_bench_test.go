package ledger_test

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/ledger/pgtest"
)

// The factory ledger at scale (issue 18, point 7): a generated factory
// ledger of 10,000,000 units from 40 benches (8 lines of 5) over a year,
// and the supervisor's, QA's and the forwarder's work on it. The
// generation takes a while and many gigabytes, so these benchmarks run
// only with FLASHSTATION_SCALE=1 (README, "Benchmarks"); the cluster is
// kept under FLASHSTATION_SCALE_DIR (default /var/tmp/flashstation-scale)
// and used again by later runs. FLASHSTATION_SCALE_UNITS sizes a smaller
// ledger (a trial of the generator).

// scaleGenVersion names the generator's output: change it with the
// generator, so a cached ledger of an older one is not used.
const scaleGenVersion = 1

// scaleBaseSchema is the factory schema version the generator loads
// into: a cached ledger of it is brought to the current version by
// OpenFactory, as a factory's ledger is upgraded (the migrations are
// measured at scale too); change it to generate on a newer schema.
const scaleBaseSchema = 1

// scaleSpec is what the generator makes.
type scaleSpec struct {
	Units          int
	Lines          int
	BenchesPerLine int
	Days           int
	BatchSize      int
	EventsPerUnit  int // 2..6: present, flash, boot stages..., verdict
	Transcripts    bool
	Start          time.Time
	// KeepIndexes loads with the migration's indexes in place (to
	// measure what dropping them around the load saves); the ledger is
	// the same.
	KeepIndexes bool
}

func (s scaleSpec) stations() int { return s.Lines * s.BenchesPerLine }

// perBenchDay is how many units a bench starts a day.
func (s scaleSpec) perBenchDay() int {
	n := s.stations() * s.Days
	return (s.Units + n - 1) / n
}

func (s scaleSpec) key() string {
	t := 0
	if s.Transcripts {
		t = 2
	}
	return fmt.Sprintf("factory-s%d-g%d-%du-%dx%d-%dd-b%d-e%d-t%d", scaleBaseSchema, scaleGenVersion,
		s.Units, s.Lines, s.BenchesPerLine, s.Days, s.BatchSize, s.EventsPerUnit, t)
}

func lineName(l int) string { return fmt.Sprintf("line-%02d", l+1) }
func modelOf(line string) string {
	return "acme-gw-" + strings.TrimPrefix(line, "line-")
}

func scaleSpecFromEnv(b *testing.B) scaleSpec {
	b.Helper()
	if os.Getenv("FLASHSTATION_SCALE") == "" {
		b.Skip("the 10,000,000-unit factory ledger: set FLASHSTATION_SCALE=1 to generate (once) and measure it (README, Benchmarks)")
	}
	s := scaleSpec{Units: 10_000_000, Lines: 8, BenchesPerLine: 5, Days: 365, BatchSize: 500, EventsPerUnit: 3,
		Transcripts: false, Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	if v := os.Getenv("FLASHSTATION_SCALE_UNITS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < s.stations()*s.Days {
			b.Fatalf("FLASHSTATION_SCALE_UNITS=%q: a number of units, at least %d", v, s.stations()*s.Days)
		}
		s.Units = n
	}
	s.KeepIndexes = os.Getenv("FLASHSTATION_SCALE_KEEP_INDEXES") != ""
	return s
}

// scale is the generated ledger's cluster, started once per test binary
// and stopped by TestMain.
var scale struct {
	once    sync.Once
	cluster *pgtest.Cluster
	url     string
	err     error
}

func stopScaleFactory() {
	if scale.cluster != nil {
		_ = scale.cluster.Stop()
	}
}

func scaleCacheDir() string {
	if d := os.Getenv("FLASHSTATION_SCALE_DIR"); d != "" {
		return d
	}
	return "/var/tmp/flashstation-scale"
}

// scaleFactory is the URL of the generated factory ledger of spec,
// generating it first when the cache has none.
func scaleFactory(b *testing.B, spec scaleSpec) string {
	b.Helper()
	scale.once.Do(func() {
		dir := filepath.Join(scaleCacheDir(), spec.key())
		if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
			pgs, _ := filepath.Glob(filepath.Join(dir, "pg-*"))
			if len(pgs) == 1 {
				if scale.cluster, scale.err = pgtest.Open(pgs[0]); scale.err != nil {
					return
				}
				scale.url = scale.cluster.URL
				// Brought to this build's schema, as a factory's is.
				t := time.Now()
				l, err := ledger.OpenFactory(context.Background(), scale.url)
				if scale.err = err; err == nil {
					scale.err = l.Close()
				}
				if d := time.Since(t); d > time.Second {
					b.Logf("migrated the cached factory ledger to schema version %d in %s", ledger.FactorySchemaVersion(), d.Round(time.Second))
				}
				return
			}
		}
		scale.url, scale.err = generateScale(b, spec, dir)
	})
	if scale.err != nil {
		b.Fatal(scale.err)
	}
	return scale.url
}

// generateScale makes the cluster in dir (removing what a broken run
// left) and fills its ledger.
func generateScale(b *testing.B, spec scaleSpec, dir string) (string, error) {
	if pgs, _ := filepath.Glob(filepath.Join(dir, "pg-*")); len(pgs) > 0 {
		for _, p := range pgs {
			if c, err := pgtest.Open(p); err == nil {
				_ = c.Stop()
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	c, err := pgtest.New(dir)
	if err != nil {
		return "", err
	}
	scale.cluster = c
	ctx := context.Background()
	// A modest factory server: 1 GB of shared buffers; checkpoints far
	// apart for the load. Kept in the cluster (postgresql.auto.conf).
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		return "", err
	}
	for _, q := range []string{`ALTER SYSTEM SET shared_buffers = '1GB'`, `ALTER SYSTEM SET max_wal_size = '4GB'`,
		`ALTER SYSTEM SET checkpoint_timeout = '30min'`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return "", err
		}
	}
	conn.Close(ctx)
	if err := c.Stop(); err != nil {
		return "", err
	}
	if err := c.Restart(); err != nil {
		return "", err
	}
	start := time.Now()
	b.Logf("generating the factory ledger %s in %s (once; later runs use it)...", spec.key(), dir)
	if err := fillScale(ctx, b, spec, c.URL); err != nil {
		return "", err
	}
	b.Logf("generated in %s", time.Since(start).Round(time.Second))
	if err := os.WriteFile(filepath.Join(dir, "done"), []byte(time.Since(start).Round(time.Second).String()+"\n"), 0o644); err != nil {
		return "", err
	}
	return c.URL, nil
}

// The generator's formulas, as SQL functions of the unit number g (0 ..
// Units-1) in the session's own schema (pg_temp: they vanish with it, the
// ledger's schema stays the migrations'). Units are numbered day by day,
// bench by bench: day d = g / (stations * perDay), bench s = (g / perDay)
// mod stations, k = g mod perDay its place in the bench's day; a bench
// works 06:00-22:00.
func scaleFunctions(spec scaleSpec) []string {
	S, P := int64(spec.stations()), int64(spec.perBenchDay())
	spacing := max(57_600_000/P, 1) // ms between a bench's starts
	base := spec.Start.UnixMilli()
	return []string{
		// A deterministic hash of g (seed: which figure).
		`CREATE FUNCTION pg_temp.h(g bigint, seed bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
			AS 'SELECT hashint8extended(g, seed) & 9223372036854775807'`,
		`CREATE FUNCTION pg_temp.ts(ms bigint) RETURNS text LANGUAGE sql IMMUTABLE
			AS $$SELECT to_char(timestamp '1970-01-01' + ms * interval '1 millisecond', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')$$`,
		// A UUIDv7 of time ms, its random bits from the seed's md5.
		`CREATE FUNCTION pg_temp.uid7(ms bigint, seed text) RETURNS text LANGUAGE sql IMMUTABLE
			AS $$SELECT substr(x, 1, 8) || '-' || substr(x, 9, 4) || '-7' || substr(m, 1, 3) || '-8' || substr(m, 4, 3) || '-' || substr(m, 7, 12)
			FROM (SELECT lpad(to_hex(ms), 12, '0') AS x, md5(seed) AS m) v$$`,
		fmt.Sprintf(`CREATE FUNCTION pg_temp.station(g bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT (g / %d) %% %d'`, P, S),
		// The unit's place on its bench.
		fmt.Sprintf(`CREATE FUNCTION pg_temp.seq(g bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT g / %d * %d + g %% %d'`, S*P, P, P),
		// g of bench s's unit i.
		fmt.Sprintf(`CREATE FUNCTION pg_temp.g_of(s bigint, i bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
			AS 'SELECT i / %d * %d + s * %d + i %% %d'`, P, S*P, P, P),
		fmt.Sprintf(`CREATE FUNCTION pg_temp.batch(g bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
			AS 'SELECT pg_temp.seq(g) / %d * %d + pg_temp.station(g) + 1'`, spec.BatchSize, S),
		fmt.Sprintf(`CREATE FUNCTION pg_temp.start_ms(g bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
			AS 'SELECT %d + g / %d * 86400000 + 21600000 + g %% %d * %d + pg_temp.h(g, 1) %% %d'`, base, S*P, P, spacing, spacing),
		`CREATE FUNCTION pg_temp.flash_ms(g bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT 60000 + pg_temp.h(g, 3) % 30000'`,
		`CREATE FUNCTION pg_temp.verify_ms(g bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT 20000 + pg_temp.h(g, 4) % 10000'`,
		`CREATE FUNCTION pg_temp.boot_ms(g bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT 150000 + pg_temp.h(g, 5) % 60000'`,
		`CREATE FUNCTION pg_temp.finish_ms(g bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
			AS 'SELECT pg_temp.start_ms(g) + pg_temp.flash_ms(g) + pg_temp.verify_ms(g) + pg_temp.boot_ms(g) + 5000 + pg_temp.h(g, 6) % 5000'`,
		// 0..999: below 900 pass, below 985 fail, else a station error.
		`CREATE FUNCTION pg_temp.outcome(g bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT pg_temp.h(g, 2) % 1000'`,
	}
}

// scaleFailReasons are the fail reasons, the first ones the most common
// (a pareto), with the stage each happens at.
var scaleFailReasons = [][2]string{{"kernel-panic", "install-boot"}, {"stage-timeout", "run-boot"},
	{"write-error", "flash"}, {"registration-timeout", "registration"}, {"verify-mismatch", "verify"},
	{"console-silent", "install-boot"}, {"kernel-panic", "run-boot"}, {"stage-timeout", "install-boot"}}

var scaleErrorReasons = []string{"vault-unreachable", "usb-reset", "image-unavailable"}

// scaleTables are the tables the load writes (lines and stations are a
// few rows).
var scaleTables = []string{"batches", "units", "events", "serial_assertions", "transcripts"}

// schemaFingerprint is the schema as the catalog shows it: columns,
// constraints, indexes, triggers.
func schemaFingerprint(ctx context.Context, conn *pgx.Conn) (string, error) {
	var s string
	err := conn.QueryRow(ctx, `SELECT string_agg(x, E'\n' ORDER BY x) FROM (
		SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull ||
			' ' || a.attidentity::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS x
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE c.relnamespace = current_schema()::regnamespace AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v')
		UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated
		FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
		UNION ALL SELECT 'index ' || pg_get_indexdef(indexrelid) || ' ' || indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE c.relnamespace = current_schema()::regnamespace
		UNION ALL SELECT 'trigger ' || pg_get_triggerdef(oid) || ' ' || tgenabled::text FROM pg_trigger WHERE NOT tgisinternal) f`).Scan(&s)
	return s, err
}

// dropForLoad drops the loaded tables' foreign keys, unique constraints
// and secondary indexes (not the primary keys), and returns the
// statements that make them again exactly as they were (from the
// catalog's definitions of the migrations' objects).
func dropForLoad(ctx context.Context, conn *pgx.Conn) (recreate []string, err error) {
	var drops []string
	var fks []string
	rows, err := conn.Query(ctx, `SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) FROM pg_constraint
		WHERE connamespace = current_schema()::regnamespace AND contype IN ('f', 'u') AND conrelid::regclass::text = ANY($1)
		ORDER BY contype, conname`, scaleTables)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var tbl, name, typ, def string
		if err := rows.Scan(&tbl, &name, &typ, &def); err != nil {
			return nil, err
		}
		drop := fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", tbl, name)
		add := fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", tbl, name, def)
		if typ == "f" {
			drops = append([]string{drop}, drops...) // foreign keys first
			fks = append(fks, add)
		} else {
			drops = append(drops, drop)
			recreate = append(recreate, add)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = conn.Query(ctx, `SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		JOIN pg_class t ON t.oid = i.indrelid
		WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY($1) AND NOT i.indisprimary
		AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) ORDER BY c.relname`, scaleTables)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			return nil, err
		}
		drops = append(drops, "DROP INDEX "+name)
		recreate = append(recreate, def)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, q := range drops {
		if _, err := conn.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	return append(recreate, fks...), nil
}

// fillScale generates the ledger of spec into the (empty) database at
// url: the migrations, then set-based inserts (generate_series over the
// unit numbers, in steps of a million), the serial assertions and their
// chains from Go (each bench's chain is sequential: COPY), the indexes,
// ANALYZE, and Verify.
func fillScale(ctx context.Context, b *testing.B, spec scaleSpec, url string) error {
	l, err := ledger.OpenFactory(ctx, url)
	if err != nil {
		return err
	}
	l.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	before, err := schemaFingerprint(ctx, conn)
	if err != nil {
		return err
	}
	step := func(what string, start time.Time) {
		b.Logf("  %-34s %s", what, time.Since(start).Round(100*time.Millisecond))
	}
	exec := func(what, q string, args ...any) error {
		t := time.Now()
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if what != "" {
			step(what, t)
		}
		return nil
	}
	for _, q := range append(scaleFunctions(spec), `SET maintenance_work_mem = '1GB'`, `SET work_mem = '256MB'`) {
		if err := exec("", q); err != nil {
			return err
		}
	}
	var recreate []string
	if !spec.KeepIndexes {
		t := time.Now()
		if recreate, err = dropForLoad(ctx, conn); err != nil {
			return err
		}
		step(fmt.Sprintf("drop %d indexes and constraints", len(recreate)), t)
	}
	S, P, U := spec.stations(), spec.perBenchDay(), int64(spec.Units)
	created := fmtTS(spec.Start)
	end := fmtTS(spec.Start.AddDate(0, 0, spec.Days))
	if err := exec("stations and lines", `INSERT INTO stations(id, hostname, created_at, seen_at)
		SELECT 'bench-' || lpad((s + 1)::text, 2, '0'), 'flash-' || lpad((s + 1)::text, 2, '0'), $1, $2 FROM generate_series(0, $3 - 1) s`,
		created, end, S); err != nil {
		return err
	}
	if err := exec("", `INSERT INTO lines(station_id, id, name, brand_id, model, created_at, updated_at)
		SELECT 'bench-' || lpad((s + 1)::text, 2, '0'), 'line-' || lpad((s / $3 + 1)::text, 2, '0'), 'Line ' || (s / $3 + 1), 'acme',
			'acme-gw-' || lpad((s / $3 + 1)::text, 2, '0'), $1, $1 FROM generate_series(0, $2 - 1) s`,
		created, S, spec.BenchesPerLine); err != nil {
		return err
	}
	// Batches of BatchSize units, each bench's in turn: a batch starts
	// with its first unit.
	nb := (spec.Days*P + spec.BatchSize - 1) / spec.BatchSize
	if err := exec("batches", `INSERT INTO batches(id, uid, station_id, line_id, operator, planned, image_sha256, state, close_reason, started_at, closed_at)
		SELECT bi * $1 + s + 1, pg_temp.uid7(pg_temp.start_ms(g0), 'b' || (bi * $1 + s)), 'bench-' || lpad((s + 1)::text, 2, '0'),
			'line-' || lpad((s / $2 + 1)::text, 2, '0'), (ARRAY['ana', 'bo', 'chen', 'dara'])[1 + (bi + s) % 4], $3,
			encode(sha256(('image-' || (bi / 50))::bytea), 'hex'), 'closed', 'complete', pg_temp.ts(pg_temp.start_ms(g0)),
			pg_temp.ts(pg_temp.finish_ms(least(pg_temp.g_of(s, bi * $3 + $3 - 1), $5 - 1)))
		FROM generate_series(0, $1 - 1) s, generate_series(0, $4 - 1) bi, LATERAL (SELECT pg_temp.g_of(s, bi * $3) AS g0) f
		WHERE g0 < $5`, S, spec.BenchesPerLine, spec.BatchSize, nb, U); err != nil {
		return err
	}
	failReasons, failStages := "", ""
	for i, r := range scaleFailReasons {
		if i > 0 {
			failReasons, failStages = failReasons+", ", failStages+", "
		}
		failReasons += "'" + r[0] + "'"
		failStages += "'" + r[1] + "'"
	}
	errReasons := "'" + strings.Join(scaleErrorReasons, "', '") + "'"
	const million = 1_000_000
	t := time.Now()
	for lo := int64(0); lo < U; lo += million {
		hi := min(lo+million, U) - 1
		// A fail's reason: a pareto (the square of a uniform number
		// picks the first reasons most).
		if err := exec("", fmt.Sprintf(`INSERT INTO units(id, uid, station_id, batch_id, line_id, slot_id, attempt, hw_serial, serial, state, stage,
			reason, detail, mapped_bytes, written_bytes, flash_ms, verify_ms, boot_ms, started_at, finished_at)
			SELECT g + 1, pg_temp.uid7(st, 'u' || g), 'bench-' || lpad((s + 1)::text, 2, '0'), pg_temp.batch(g),
				'line-' || lpad((s / %[1]d + 1)::text, 2, '0'), 'S' || lpad((g %% 16 + 1)::text, 2, '0'), 1,
				'HW' || upper(lpad(to_hex((g * 1103515245 + 12345) %% 1099511627776), 10, '0')),
				CASE WHEN o < 900 THEN 'SN' || lpad((g + 1)::text, 9, '0') ELSE '' END,
				CASE WHEN o < 900 THEN 'pass' WHEN o < 985 THEN 'fail' ELSE 'error' END,
				CASE WHEN o < 900 THEN 'registered' WHEN o < 985 THEN (ARRAY[%[3]s])[fr] ELSE 'flash' END,
				CASE WHEN o < 900 THEN '' WHEN o < 985 THEN (ARRAY[%[2]s])[fr] ELSE (ARRAY[%[4]s])[1 + o %% 3] END,
				CASE WHEN o < 900 THEN '' WHEN o < 985 THEN 'slot ' || (g %% 16 + 1) || ': see the transcript' ELSE 'the station could not go on' END,
				3221225472, 1879048192 + pg_temp.h(g, 7) %% 1048576, pg_temp.flash_ms(g), pg_temp.verify_ms(g), pg_temp.boot_ms(g),
				pg_temp.ts(st), pg_temp.ts(pg_temp.finish_ms(g))
			FROM (SELECT g, pg_temp.station(g) AS s, pg_temp.start_ms(g) AS st, pg_temp.outcome(g) AS o,
				1 + floor(((pg_temp.h(g, 8) %% 1000) ^ 2) * %[5]d / 1000000)::int AS fr
				FROM generate_series(%[6]d::bigint, %[7]d) g) v`,
			spec.BenchesPerLine, failReasons, failStages, errReasons, len(scaleFailReasons), lo, hi)); err != nil {
			return fmt.Errorf("units: %w", err)
		}
	}
	step(fmt.Sprintf("%d units", U), t)
	// Events: what the stations record of each unit (present, flash with
	// its figures, the boot stages, the verdict).
	stages := []string{"install-boot", "run-boot", "console-ready", "registered"}[:max(0, min(4, spec.EventsPerUnit-3))]
	t = time.Now()
	E := int64(spec.EventsPerUnit)
	for lo := int64(1); lo <= U; lo += million {
		hi := min(lo+million-1, U)
		var parts []string
		parts = append(parts, `SELECT 1 AS j, 0::bigint AS off, 'stage' AS kind, 'present' AS stage, 'reached' AS message, '{"at_seconds":0}' AS data`)
		parts = append(parts, `SELECT 2, 1000, 'flash', 'flash', 'written', '{"mapped":3221225472,"written":1879048192}'`)
		for i, st := range stages {
			parts = append(parts, fmt.Sprintf(`SELECT %d, %d, 'stage', '%s', 'reached', '{"at_seconds":%d}'`, 3+i, 100000+i*40000, st, 100+i*40))
		}
		if err := exec("", fmt.Sprintf(`INSERT INTO events(id, uid, station_id, at, batch_id, unit_id, slot_id, kind, stage, message, data)
			SELECT (u.id - 1) * %[1]d + e.j, pg_temp.uid7(ms, 'e' || ((u.id - 1) * %[1]d + e.j)), u.station_id, pg_temp.ts(ms),
				u.batch_id, u.id, u.slot_id, e.kind, e.stage, e.message, e.data
			FROM units u CROSS JOIN (%[2]s) e, LATERAL (SELECT pg_temp.start_ms(u.id - 1) + e.off AS ms) t
			WHERE u.id BETWEEN %[3]d AND %[4]d
			UNION ALL
			SELECT u.id * %[1]d, pg_temp.uid7(ms, 'e' || (u.id * %[1]d)), u.station_id, pg_temp.ts(ms), u.batch_id, u.id, u.slot_id,
				'verdict', '', u.state || CASE WHEN u.reason = '' THEN '' ELSE ' ' || u.reason END, '{}'
			FROM units u, LATERAL (SELECT pg_temp.finish_ms(u.id - 1) AS ms) t WHERE u.id BETWEEN %[3]d AND %[4]d`,
			E, strings.Join(parts, " UNION ALL "), lo, hi)); err != nil {
			return fmt.Errorf("events: %w", err)
		}
	}
	step(fmt.Sprintf("%d events", U*E), t)
	if spec.Transcripts {
		t = time.Now()
		for lo := int64(1); lo <= U; lo += million {
			hi := min(lo+million-1, U)
			if err := exec("", fmt.Sprintf(`INSERT INTO transcripts(id, uid, station_id, unit_id, slot_id, kind, path, size, sha256, created_at)
				SELECT (u.id - 1) * 2 + k.n, pg_temp.uid7(ms, 't' || ((u.id - 1) * 2 + k.n)), u.station_id, u.id, u.slot_id, k.kind,
					'/var/lib/flashstation/transcripts/' || u.uid || '.' || k.ext, 20000 + pg_temp.h(u.id, 9) %% 20000 * k.n,
					md5('t' || u.id || k.kind) || md5(k.kind || u.id), pg_temp.ts(ms)
				FROM units u CROSS JOIN (VALUES (1, 'raw', 'raw'), (2, 'clean', 'log')) k(n, kind, ext),
					LATERAL (SELECT pg_temp.finish_ms(u.id - 1) AS ms) t
				WHERE u.id BETWEEN %d AND %d`, lo, hi)); err != nil {
				return fmt.Errorf("transcripts: %w", err)
			}
		}
		step(fmt.Sprintf("%d transcripts", U*2), t)
	}
	t = time.Now()
	n, err := copyAssertions(ctx, url, conn)
	if err != nil {
		return fmt.Errorf("serial assertions: %w", err)
	}
	step(fmt.Sprintf("%d serial assertions (COPY)", n), t)
	t = time.Now()
	for _, q := range recreate {
		if err := exec("", q); err != nil {
			return err
		}
	}
	if len(recreate) > 0 {
		step(fmt.Sprintf("recreate %d indexes and constraints", len(recreate)), t)
	}
	for _, tbl := range scaleTables {
		if err := exec("", fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%[1]s', 'id'), coalesce((SELECT max(id) FROM %[1]s), 0) + 1, false)`, tbl)); err != nil {
			return err
		}
	}
	if err := exec("VACUUM ANALYZE", `VACUUM (ANALYZE)`); err != nil {
		return err
	}
	after, err := schemaFingerprint(ctx, conn)
	if err != nil {
		return err
	}
	if after != before {
		return fmt.Errorf("the load changed the schema:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	t = time.Now()
	fac, err := ledger.OpenFactoryReadOnly(ctx, url)
	if err != nil {
		return err
	}
	defer fac.Close()
	rep, err := fac.Verify(ctx)
	if err != nil {
		return err
	}
	if !rep.OK || len(rep.Chains) != S {
		return fmt.Errorf("the generated ledger does not verify: %d chains, %v", len(rep.Chains), rep.Err())
	}
	step(fmt.Sprintf("Verify: %d chains", len(rep.Chains)), t)
	var size string
	if err := conn.QueryRow(ctx, `SELECT pg_size_pretty(pg_database_size(current_database()))`).Scan(&size); err != nil {
		return err
	}
	b.Logf("  database size %s", size)
	return nil
}

func fmtTS(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// copyAssertions writes one serial assertion per passed unit, in the
// units' order, each bench's chained as the bench chains them (seq
// 1..n, prev and link by the ledger's own function), read from the units
// on one connection and copied in on another.
func copyAssertions(ctx context.Context, url string, w *pgx.Conn) (int64, error) {
	r, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer r.Close(ctx)
	rows, err := r.Query(ctx, `SELECT id, station_id, line_id, serial, finished_at FROM units WHERE state = 'pass' ORDER BY id`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	src := &assertionSource{rows: rows, chains: map[string]*chainState{}}
	n, err := w.CopyFrom(ctx, pgx.Identifier{"serial_assertions"}, []string{"uid", "station_id", "seq", "text", "text_sha256",
		"brand_id", "model", "serial", "revision", "device_key_id", "line_id", "unit_id", "via", "duplicate", "received_at",
		"prev_sha256", "link_sha256"}, src)
	if err != nil {
		return n, err
	}
	return n, rows.Err()
}

type chainState struct {
	seq  int64
	link string
}

type assertionSource struct {
	rows   pgx.Rows
	chains map[string]*chainState
	row    []any
	err    error
}

func (s *assertionSource) Next() bool {
	if !s.rows.Next() {
		return false
	}
	var id int64
	var station, line, serial, finished string
	if err := s.rows.Scan(&id, &station, &line, &serial, &finished); err != nil {
		s.err = err
		return false
	}
	fin, err := time.Parse("2006-01-02T15:04:05.000Z", finished)
	if err != nil {
		s.err = err
		return false
	}
	at := fin.Add(-2 * time.Second)
	received := fmtTS(at)
	key := sha512.Sum384([]byte("device-key " + serial))
	keyID := base64.RawURLEncoding.EncodeToString(key[:])
	body := sha512.Sum512([]byte("key body " + serial))
	sig := sha512.Sum512([]byte("signature " + serial))
	a := ledger.SerialAssertion{BrandID: "acme", Model: modelOf(line), Serial: serial, Revision: 1, DeviceKeyID: keyID,
		LineID: line, Via: ledger.ViaProxy}
	text := "type: serial\nauthority-id: acme\nbrand-id: acme\nmodel: " + a.Model + "\nserial: " + serial +
		"\ndevice-key:\n    AcbBTQRWhcGAARAA" + base64.StdEncoding.EncodeToString(body[:]) +
		"\ndevice-key-sha3-384: " + keyID + "\ntimestamp: " + at.Format(time.RFC3339) +
		"\nsign-key-sha3-384: BWDEoaqyr25nF5SNCvEv2v7QnM9QsfCkPDchrKxuh0Ox6VEq8Qka9uf_8EZcDHFE\n\nAcLBUgQAAQoABgUC" +
		base64.StdEncoding.EncodeToString(sig[:]) + "\n"
	sum := sha256.Sum256([]byte(text))
	textSHA := hex.EncodeToString(sum[:])
	c := s.chains[station]
	if c == nil {
		c = &chainState{link: ledger.ZeroLink}
		s.chains[station] = c
	}
	c.seq++
	prev := c.link
	c.link = ledger.ChainLink(prev, c.seq, textSHA, a, received)
	s.row = []any{ledger.NewUID(at), station, c.seq, text, textSHA, a.BrandID, a.Model, serial, 1, keyID, line, id,
		ledger.ViaProxy, 0, received, prev, c.link}
	return true
}

func (s *assertionSource) Values() ([]any, error) { return s.row, nil }
func (s *assertionSource) Err() error             { return s.err }

// BenchmarkFactoryStatusLineDay: a supervisor's status of one line's
// day (5 benches, about 3,400 units) on the 10,000,000-unit factory
// ledger, a different line and day each time. Target: under 200 ms.
func BenchmarkFactoryStatusLineDay(b *testing.B) {
	spec := scaleSpecFromEnv(b)
	url := scaleFactory(b, spec)
	ctx := context.Background()
	fac, err := ledger.OpenFactoryReadOnly(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer fac.Close()
	want := spec.BenchesPerLine * spec.perBenchDay()
	fullDays := spec.Units / (spec.stations() * spec.perBenchDay())
	i := 0
	for b.Loop() {
		i++
		line := lineName(i % spec.Lines)
		day := spec.Start.AddDate(0, 0, (i*37)%fullDays)
		s, err := fac.Stats(ctx, ledger.StatsFilter{LineID: line, Since: day, Until: day.Add(24 * time.Hour)})
		if err != nil || s.Units != want || s.Yield == nil || len(s.Pareto) == 0 {
			b.Fatalf("%s %s: %d units (want %d), %v", line, day.Format(time.DateOnly), s.Units, want, err)
		}
	}
	b.ReportMetric(float64(want), "units/op")
}

// scaleSerials picks n random serials of the ledger's passed units.
func scaleSerials(b *testing.B, url string, units, n int) []string {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	r := rand.New(rand.NewPCG(18, 7))
	ids := make([]int64, n*2)
	for i := range ids {
		ids[i] = 1 + r.Int64N(int64(units))
	}
	rows, err := conn.Query(ctx, `SELECT serial FROM units WHERE id = ANY($1) AND serial <> '' LIMIT $2`, ids, n)
	if err != nil {
		b.Fatal(err)
	}
	serials, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(serials) < n/2 {
		b.Fatalf("%d serials, %v", len(serials), err)
	}
	return serials
}

// BenchmarkFactoryLogsSerial: QA's logs SERIAL on the factory ledger: the
// board's units by serial, then a unit's evidence (unit, events, serial
// assertions and their links, its bench's chain head, transcripts), for
// random serials. Target: under 20 ms.
func BenchmarkFactoryLogsSerial(b *testing.B) {
	spec := scaleSpecFromEnv(b)
	url := scaleFactory(b, spec)
	serials := scaleSerials(b, url, spec.Units, 2000)
	ctx := context.Background()
	fac, err := ledger.OpenFactoryReadOnly(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer fac.Close()
	i := 0
	for b.Loop() {
		serial := serials[i%len(serials)]
		i++
		us, err := fac.UnitsBySerial(ctx, serial)
		if err != nil || len(us) != 1 {
			b.Fatalf("%s: %d units, %v", serial, len(us), err)
		}
		e, err := fac.Evidence(ctx, us[0].ID)
		if err != nil || len(e.Events) != spec.EventsPerUnit || len(e.Assertions) != 1 || e.Chain.Rows == 0 {
			b.Fatalf("%s: evidence %d events, %d assertions, chain %v: %v", serial, len(e.Events), len(e.Assertions), e.Chain, err)
		}
	}
}

// forwardUnits is how many units BenchmarkForward's bench records
// (FLASHSTATION_SCALE_FORWARD_UNITS).
func forwardUnits(b *testing.B) int {
	n := 3000
	if v := os.Getenv("FLASHSTATION_SCALE_FORWARD_UNITS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("FLASHSTATION_SCALE_FORWARD_UNITS=%q: a number of units", v)
		}
	}
	return n
}

// recordAsStation records n units on a new bench ledger at path, as a
// station's slots do (lines/slot.go): the unit started, its events in a
// few appends (about 15), its progress, its serial assertion, two
// transcripts, its verdict. The bench forwards to factoryID from the
// start, so its outbox holds everything.
func recordAsStation(b *testing.B, path, factoryID, station string, n int) {
	ctx := context.Background()
	l, err := ledger.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	if _, err := l.EnableForwarding(ctx, factoryID); err != nil {
		b.Fatal(err)
	}
	if err := l.EnsureStation(ctx, ledger.Station{ID: station, Hostname: "flash-fwd"}); err != nil {
		b.Fatal(err)
	}
	if err := l.EnsureLine(ctx, ledger.Line{ID: "line-01", StationID: station, Name: "Line 1", BrandID: "acme", Model: "acme-gw-01"}); err != nil {
		b.Fatal(err)
	}
	var batch int64
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	for i := range n {
		if i%500 == 0 {
			if batch != 0 {
				must(l.CloseBatch(ctx, batch, ledger.BatchComplete))
			}
			batch, err = l.StartBatch(ctx, ledger.Batch{LineID: "line-01", Operator: "ana", Planned: 500})
			must(err)
		}
		slot := fmt.Sprintf("S%02d", i%16+1)
		hw := fmt.Sprintf("FWD-HW-%s-%06d", station, i)
		serial := fmt.Sprintf("FWD-%s-%06d", station, i)
		u, err := l.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line-01", SlotID: slot, HWSerial: hw, Stage: "present"})
		must(err)
		ev := func(kind, stage, msg string) ledger.Event {
			return ledger.Event{BatchID: batch, UnitID: u, SlotID: slot, Kind: kind, Stage: stage, Message: msg, Data: []byte(`{"at_seconds":12.5}`)}
		}
		must(l.AppendEvents(ctx, ev("stage", "present", "reached"), ev("progress", "flash", "10%"), ev("progress", "flash", "50%"),
			ev("progress", "flash", "90%"), ev("flash", "flash", "written")))
		must(l.UpdateUnit(ctx, u, ledger.UnitProgress{Stage: "flash", MappedBytes: 3 << 30, WrittenBytes: 1 << 30,
			FlashTime: 70 * time.Second, VerifyTime: 25 * time.Second}))
		must(l.AppendEvents(ctx, ev("stage", "install-boot", "reached"), ev("line", "install-boot", "Starting kernel ..."),
			ev("stage", "run-boot", "reached"), ev("line", "run-boot", "snapd: seeding"), ev("stage", "console-ready", "reached")))
		must(l.UpdateUnit(ctx, u, ledger.UnitProgress{Stage: "boot", BootTime: 180 * time.Second}))
		must(l.AppendEvents(ctx, ev("stage", "identity", "reached"), ev("stage", "registration", "reached")))
		a := assertion(serial, 1)
		a.UnitID, a.LineID, a.Model = u, "line-01", "acme-gw-01"
		_, _, err = l.RecordSerialAssertion(ctx, a)
		must(err)
		must(l.UpdateUnit(ctx, u, ledger.UnitProgress{Serial: serial, Stage: "registered"}))
		for _, k := range []string{ledger.TranscriptRaw, ledger.TranscriptClean} {
			_, err := l.AddTranscript(ctx, ledger.Transcript{UnitID: u, SlotID: slot, Kind: k, Path: "/var/lib/flashstation/t/" + serial + "." + k,
				Size: 30000, SHA256: strings.Repeat("ab", 32)})
			must(err)
		}
		must(l.AppendEvents(ctx, ev("stage", "verdict", "pass"), ev("verdict", "", "pass")))
		must(l.FinishUnit(ctx, u, ledger.UnitPass, "", ""))
	}
	must(l.CloseBatch(ctx, batch, ledger.BatchComplete))
}

// removeStation deletes a station's rows from the factory ledger, under
// the guards (the session replicates: its triggers do not fire), so the
// benchmark leaves the cached ledger as it found it.
func removeStation(ctx context.Context, url, station string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
		return err
	}
	for _, tbl := range []string{"transcripts", "events", "serial_assertions", "units", "batches", "lines", "stations"} {
		col := "station_id"
		if tbl == "stations" {
			col = "id"
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+tbl+` WHERE `+col+` = $1`, station); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// forwardBench is BenchmarkForward's recorded bench ledger file.
var forwardBench struct {
	n    int
	file []byte
}

// BenchmarkForward: one bench (a fresh SQLite ledger) that recorded N
// units as a station does (about 15 events, 3 progress updates, a serial
// assertion, 2 transcripts each; FLASHSTATION_SCALE_FORWARD_UNITS, 3,000
// by default) forwards its whole outbox, in the forwarder's chunks, into
// the 10,000,000-unit factory ledger. Target: at least 2,000 units/s.
// Each round starts from a copy of the recorded bench and removes what it
// sent afterwards (untimed).
func BenchmarkForward(b *testing.B) {
	spec := scaleSpecFromEnv(b)
	url := scaleFactory(b, spec)
	ctx := context.Background()
	fac, err := ledger.OpenFactory(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer fac.Close()
	factoryID, err := fac.FactoryID(ctx)
	if err != nil {
		b.Fatal(err)
	}
	const station = "bench-fwd"
	n := forwardUnits(b)
	dir := b.TempDir()
	if forwardBench.n != n {
		// Recorded once per test binary (the benchmark runs several
		// times).
		template := filepath.Join(dir, "template.db")
		t := time.Now()
		recordAsStation(b, template, factoryID, station, n)
		b.Logf("recorded %d units on the bench in %s", n, time.Since(t).Round(time.Millisecond))
		if forwardBench.file, err = os.ReadFile(template); err != nil {
			b.Fatal(err)
		}
		forwardBench.n = n
	}
	recorded := forwardBench.file
	chunk := 5000 // the Forwarder's
	if v := os.Getenv("FLASHSTATION_SCALE_FORWARD_CHUNK"); v != "" {
		if chunk, err = strconv.Atoi(v); err != nil || chunk < 1 {
			b.Fatalf("FLASHSTATION_SCALE_FORWARD_CHUNK=%q: a number of outbox entries", v)
		}
	}
	if err := removeStation(ctx, url, station); err != nil { // a run killed half-way
		b.Fatal(err)
	}
	var sent time.Duration
	var entries int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		path := filepath.Join(dir, fmt.Sprintf("bench-%d.db", i))
		if err := os.WriteFile(path, recorded, 0o644); err != nil {
			b.Fatal(err)
		}
		bench, err := ledger.Open(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		backlog, _ := bench.Backlog(ctx)
		b.StartTimer()
		start := time.Now()
		for {
			k, err := bench.ForwardAll(ctx, fac, station, chunk)
			if err != nil {
				b.Fatal(err)
			}
			if k == 0 {
				break
			}
			entries += k
		}
		sent += time.Since(start)
		b.StopTimer()
		if left, _ := bench.Backlog(ctx); left != 0 || backlog == 0 {
			b.Fatalf("outbox %d before, %d after", backlog, left)
		}
		bench.Close()
		os.Remove(path)
		us, err := fac.Units(ctx, ledger.UnitFilter{StationID: station})
		if err != nil || len(us) != n {
			b.Fatalf("the factory ledger holds %d of the bench's %d units: %v", len(us), n, err)
		}
		if err := removeStation(ctx, url, station); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(n*b.N)/sent.Seconds(), "units/s")
	b.ReportMetric(float64(entries)/float64(n*b.N), "rows/unit")
}
