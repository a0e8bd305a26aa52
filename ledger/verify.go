package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Problem is one thing Verify found wrong.
type Problem struct {
	// Table and Row name the bad record ("serial_assertions", its id);
	// Row is 0 for a problem of the schema (a missing trigger).
	Table string `json:"table"`
	Row   int64  `json:"row,omitempty"`
	// Station is the bench whose chain the row is in, on a factory
	// ledger (Row is then the row's place in that chain, its id at the
	// bench).
	Station string `json:"station,omitempty"`
	// Serial is the row's serial, when it has one.
	Serial string `json:"serial,omitempty"`
	Why    string `json:"why"`
}

func (p Problem) String() string {
	row := fmt.Sprintf("%s row %d", p.Table, p.Row)
	if p.Serial != "" {
		row += fmt.Sprintf(" (serial %s)", p.Serial)
	}
	if p.Station != "" {
		row += " of station " + p.Station
	}
	if p.Row == 0 {
		return p.Why
	}
	return row + ": " + p.Why
}

// Report is what Verify found.
type Report struct {
	OK bool `json:"ok"`
	// Head is the chain's end as the ledger holds it now (on a factory
	// ledger, the rows of every chain; Chains has each bench's head).
	Head   ChainHead            `json:"chain_head"`
	Chains map[string]ChainHead `json:"station_chains,omitempty"`
	// Triggers is how many guarding triggers were checked.
	Triggers int `json:"triggers"`
	// Signatures is how many assertion signatures were checked (0
	// without a signature verifier).
	Signatures int `json:"signatures_checked"`
	// Batches is how many batch seals (their image identity) were
	// checked.
	Batches int `json:"batches_checked"`
	// First is the first bad row (the lowest id), else the first problem
	// of the schema (a dropped trigger).
	First *Problem `json:"first_problem,omitempty"`
	// Problems lists every problem, schema first, then by row.
	Problems []Problem `json:"problems"`
}

// Err is nil for a ledger that verified, else an error naming the first
// problem.
func (r Report) Err() error {
	if r.OK {
		return nil
	}
	more := ""
	if n := len(r.Problems) - 1; n > 0 {
		more = fmt.Sprintf(" (and %d more)", n)
	}
	return fmt.Errorf("%w: %s%s", ErrTampered, r.First, more)
}

// ErrTampered is the error of a ledger that failed verification.
var ErrTampered = errors.New("the ledger fails verification")

// VerifyOption changes what Verify checks.
type VerifyOption func(*verifyConfig)

type verifyConfig struct {
	signature func(text []byte) error
	batches   []int64
}

// VerifyBatches makes VerifyAssertions check these batches seals too
// (the batches of the units a command prints, whose image identity it
// shows). Verify checks every batch.
func VerifyBatches(ids ...int64) VerifyOption {
	return func(c *verifyConfig) { c.batches = append(c.batches, ids...) }
}

// VerifySignatures makes Verify check every recorded assertion's text
// with fn (the station's brand keys: ledger knows no keys).
func VerifySignatures(fn func(text []byte) error) VerifyOption {
	return func(c *verifyConfig) { c.signature = fn }
}

// startVerify is the start of both verifications: the options, and the
// triggers' check (its schema problems, and the count in the report).
func (l *Ledger) startVerify(ctx context.Context, opts []VerifyOption) (verifyConfig, Report, []Problem, error) {
	var cfg verifyConfig
	for _, o := range opts {
		o(&cfg)
	}
	var rep Report
	schema, n, err := l.verifyTriggers(ctx)
	rep.Triggers = n
	return cfg, rep, schema, err
}

// Verify checks that the ledger is the record the station wrote:
//   - every guarding trigger is in the schema exactly as the migrations
//     wrote it (a dropped or rewritten trigger is tampering);
//   - every serial assertion's text_sha256 is the SHA-256 of its text;
//   - the ids run 1, 2, 3... without a gap (a deleted row);
//   - each row's prev_sha256 is the link of the row before (ZeroLink for
//     the first) and its link_sha256 is its link (chain.go);
//   - an assertion's unit exists, and when the unit has a serial it is
//     the assertion's serial (a failed identity-mismatch unit also keeps
//     the board's differing assertion as evidence);
//   - with VerifySignatures, every text's signature;
//   - every batch image_seal covers its image identity as it is now
//     (image_sha256, model_digest, seed_label, model_sign_key; chain.go).
//
// Removing rows from the end of the chain leaves a valid shorter chain:
// compare the head with one an export carried (ChainHead).
//
// The error is for a ledger that cannot be read; a ledger that fails is
// a Report with OK false.
func (l *Ledger) Verify(ctx context.Context, opts ...VerifyOption) (Report, error) {
	cfg, rep, schema, err := l.startVerify(ctx, opts)
	if err != nil {
		return rep, err
	}
	rows, err := l.verifyRows(ctx, cfg, &rep)
	if err != nil {
		return rep, err
	}
	batches, err := l.verifyBatches(ctx, nil, &rep)
	if err != nil {
		return rep, err
	}
	err = l.finishReport(ctx, &rep, schema, append(rows, batches...), nil)
	return rep, err
}

var (
	createTrigger = regexp.MustCompile(`(?s)CREATE TRIGGER (\w+).*?\bEND;`)
	dropTrigger   = regexp.MustCompile(`DROP TRIGGER (?:IF EXISTS )?(\w+)`)
)

// expectedTriggers is every trigger the migrations leave, by name, as SQL
// with its whitespace normalized.
func expectedTriggers() map[string]string {
	want := map[string]string{}
	for _, m := range migrations {
		for _, d := range dropTrigger.FindAllStringSubmatch(m.sql, -1) {
			delete(want, d[1])
		}
		for _, c := range createTrigger.FindAllStringSubmatch(m.sql, -1) {
			want[c[1]] = normalizeSQL(c[0])
		}
	}
	return want
}

func normalizeSQL(s string) string {
	return strings.TrimSuffix(strings.Join(strings.Fields(s), " "), ";")
}

func (l *Ledger) verifyTriggers(ctx context.Context) ([]Problem, int, error) {
	if l.d == postgresDialect {
		return l.verifyPGTriggers(ctx)
	}
	rows, err := l.r.QueryContext(ctx, `SELECT name, tbl_name, coalesce(sql, '') FROM sqlite_master WHERE type = 'trigger'`)
	if err != nil {
		return nil, 0, fmt.Errorf("ledger: verify triggers: %w", err)
	}
	defer rows.Close()
	type trig struct{ table, sql string }
	have := map[string]trig{}
	for rows.Next() {
		var name string
		var t trig
		if err := rows.Scan(&name, &t.table, &t.sql); err != nil {
			return nil, 0, fmt.Errorf("ledger: verify triggers: %w", err)
		}
		have[name] = t
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("ledger: verify triggers: %w", err)
	}
	want := expectedTriggers()
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []Problem
	for _, n := range names {
		t, ok := have[n]
		switch {
		case !ok:
			out = append(out, Problem{Table: "sqlite_master", Why: fmt.Sprintf("trigger %s is missing: it was dropped", n)})
		case normalizeSQL(t.sql) != want[n]:
			out = append(out, Problem{Table: "sqlite_master", Why: fmt.Sprintf("trigger %s on %s is not the one the ledger wrote", n, t.table)})
		}
	}
	return out, len(names), nil
}

// storedRow is a serial assertion as stored, with its unit.
type storedRow struct {
	chainRow
	text, prev, link                  string
	unitID, unitFound                 sql.NullInt64
	unitSerial, unitState, unitReason string
	station, key                      string // key: its chain (empty on a bench)
}

// storedRowSelect selects rows as a chain covers them: id is the row's
// place in its chain, key the chain (chain.go).
func (d dialect) storedRowSelect() string {
	return `SELECT a.` + d.chainSeq() + `, a.text, a.text_sha256, a.brand_id, a.model, a.serial, a.revision,
	a.device_key_id, a.line_id, a.via, a.duplicate, a.received_at, a.prev_sha256, a.link_sha256,
	a.unit_id, u.id, coalesce(u.serial, ''), coalesce(u.state, ''), coalesce(u.reason, ''), a.station_id, ` + d.chainKeyOf("a") + `
	FROM serial_assertions a LEFT JOIN units u ON u.id = a.unit_id`
}

func scanStoredRow(sc interface{ Scan(...any) error }) (storedRow, error) {
	var r storedRow
	err := sc.Scan(&r.id, &r.text, &r.textSHA256, &r.brand, &r.model, &r.serial, &r.revision, &r.deviceKeyID,
		&r.lineID, &r.via, &r.duplicate, &r.receivedAt, &r.prev, &r.link, &r.unitID, &r.unitFound, &r.unitSerial,
		&r.unitState, &r.unitReason, &r.station, &r.key)
	return r, err
}

// problem is a Problem of this row.
func (r storedRow) problem(format string, args ...any) Problem {
	return Problem{Table: "serial_assertions", Row: r.id, Station: r.key, Serial: r.serial, Why: fmt.Sprintf(format, args...)}
}

// check is what one row says of itself: its text hash, its own link (from
// its stored prev), its unit and its signature.
func (r storedRow) check(cfg verifyConfig, rep *Report) []Problem {
	var out []Problem
	sum := sha256.Sum256([]byte(r.text))
	if hex.EncodeToString(sum[:]) != r.textSHA256 {
		out = append(out, r.problem("text_sha256 is not the SHA-256 of the text: the text or its hash was changed"))
	}
	if r.link != chainLink(r.prev, r.chainRow) {
		out = append(out, r.problem("link_sha256 does not cover the row as it is: a column was changed"))
	}
	if r.unitID.Valid {
		switch {
		case !r.unitFound.Valid:
			out = append(out, r.problem("its unit %d does not exist", r.unitID.Int64))
		case r.unitSerial != "" && r.unitSerial != r.serial && !(r.unitState == UnitFail && r.unitReason == "identity-mismatch"):
			out = append(out, r.problem("it is linked to unit %d, whose serial is %s", r.unitID.Int64, r.unitSerial))
		}
	}
	if cfg.signature != nil {
		rep.Signatures++
		if err := cfg.signature([]byte(r.text)); err != nil {
			out = append(out, r.problem("signature: %v", err))
		}
	}
	return out
}

func (l *Ledger) verifyRows(ctx context.Context, cfg verifyConfig, rep *Report) ([]Problem, error) {
	rows, err := l.r.QueryContext(ctx, l.d.storedRowSelect()+` ORDER BY `+l.d.chainKeyOf("a")+`, a.`+l.d.chainSeq())
	if err != nil {
		return nil, fmt.Errorf("ledger: verify serial assertions: %w", err)
	}
	defer rows.Close()
	var out []Problem
	var lastID int64
	lastLink, lastKey := ZeroLink, ""
	for rows.Next() {
		r, err := scanStoredRow(rows)
		if err != nil {
			return nil, fmt.Errorf("ledger: verify serial assertions: %w", err)
		}
		if r.key != lastKey {
			// The next station's chain.
			lastID, lastLink, lastKey = 0, ZeroLink, r.key
		}
		if r.id != lastID+1 {
			if lastID == 0 {
				out = append(out, r.problem("the chain starts at id %d: %s deleted", r.id, idSpan(1, r.id-1)))
			} else {
				out = append(out, r.problem("row %d is followed by row %d: %s deleted", lastID, r.id, idSpan(lastID+1, r.id-1)))
			}
		}
		if r.prev != lastLink {
			out = append(out, r.problem("prev_sha256 is not the link of the row before it: the chain is broken here"))
		}
		out = append(out, r.check(cfg, rep)...)
		lastID, lastLink = r.id, r.link
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: verify serial assertions: %w", err)
	}
	return out, nil
}

// VerifyAssertions is Verify for the serial assertions with these ids
// only, what a command checks before it prints them, in time that does
// not grow with the ledger: the triggers, each row's own checks, and the
// chain around it (the row before exists and its link is this row's
// prev, the row after follows without a gap and chains from this row's
// link), and that no row is missing anywhere (a count; the gap is looked
// for only when one is). A row changed elsewhere in the ledger is found by
// Verify.
func (l *Ledger) VerifyAssertions(ctx context.Context, ids []int64, opts ...VerifyOption) (Report, error) {
	cfg, rep, schema, err := l.startVerify(ctx, opts)
	if err != nil {
		return rep, err
	}
	ids = append([]int64(nil), ids...)
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var out []Problem
	for i, id := range ids {
		if i > 0 && id == ids[i-1] {
			continue
		}
		r, err := scanStoredRow(l.r.QueryRowContext(ctx, l.d.storedRowSelect()+` WHERE a.id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			out = append(out, Problem{Table: "serial_assertions", Row: id, Why: "the row was deleted"})
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("ledger: verify serial assertion %d: %w", id, err)
		}
		key, seq := l.d.chainKey(), l.d.chainSeq()
		if r.id == 1 {
			if r.prev != ZeroLink {
				out = append(out, r.problem("prev_sha256 of the first row is not %s: the chain is broken here", ZeroLink))
			}
		} else {
			var before string
			err := l.r.QueryRowContext(ctx, `SELECT link_sha256 FROM serial_assertions WHERE `+key+` = ? AND `+seq+` = ?`,
				r.key, r.id-1).Scan(&before)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				out = append(out, r.problem("row %d before it was deleted", r.id-1))
			case err != nil:
				return rep, fmt.Errorf("ledger: verify serial assertion %d: %w", id, err)
			case before != r.prev:
				out = append(out, r.problem("prev_sha256 is not the link of the row before it: the chain is broken here"))
			}
		}
		var nextID int64
		var nextPrev string
		err = l.r.QueryRowContext(ctx, `SELECT `+seq+`, prev_sha256 FROM serial_assertions WHERE `+key+` = ? AND `+seq+` > ?
			ORDER BY `+seq+` LIMIT 1`, r.key, r.id).Scan(&nextID, &nextPrev)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return rep, fmt.Errorf("ledger: verify serial assertion %d: %w", id, err)
		case nextID != r.id+1:
			out = append(out, r.problem("it is followed by row %d: %s deleted", nextID, idSpan(r.id+1, nextID-1)))
		case nextPrev != r.link:
			out = append(out, r.problem("row %d after it does not chain from its link: its link was rewritten", nextID))
		}
		out = append(out, r.check(cfg, &rep)...)
	}
	if len(cfg.batches) > 0 {
		batches, err := l.verifyBatches(ctx, cfg.batches, &rep)
		if err != nil {
			return rep, err
		}
		out = append(out, batches...)
	}
	var chains []string
	if l.d == postgresDialect {
		// A factory ledger holds millions of rows: its check of printed
		// rows reads their chains' neighbours and heads only (a row
		// deleted elsewhere, past the guards, is Verify's to find).
		seen := map[string]bool{}
		for _, id := range ids {
			var st string
			if err := l.r.QueryRowContext(ctx, `SELECT station_id FROM serial_assertions WHERE id = ?`, id).Scan(&st); err == nil && !seen[st] {
				seen[st] = true
				chains = append(chains, st)
			}
		}
		sort.Strings(chains)
	} else {
		gaps, err := l.firstGaps(ctx)
		if err != nil {
			return rep, err
		}
		out = append(out, gaps...)
	}
	err = l.finishReport(ctx, &rep, schema, out, chains)
	return rep, err
}

// verifyBatches checks the seal of the batches with these ids (nil:
// every batch).
func (l *Ledger) verifyBatches(ctx context.Context, ids []int64, rep *Report) ([]Problem, error) {
	if ids != nil && len(ids) == 0 {
		return nil, nil
	}
	// An export names thousands of batches: a query per 500, within every
	// engine bound on parameters.
	if len(ids) > 500 {
		var out []Problem
		for i := 0; i < len(ids); i += 500 {
			ps, err := l.verifyBatches(ctx, ids[i:min(i+500, len(ids))], rep)
			if err != nil {
				return nil, err
			}
			out = append(out, ps...)
		}
		return out, nil
	}
	q := `SELECT id, uid, station_id, line_id, image_sha256, model_digest, seed_label, model_sign_key, image_seal FROM batches`
	var args []any
	if ids != nil {
		q += ` WHERE id IN (` + placeholders(len(ids)) + `)`
		for _, id := range ids {
			args = append(args, id)
		}
	}
	rows, err := l.r.QueryContext(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: verify batches: %w", err)
	}
	defer rows.Close()
	var out []Problem
	found := map[int64]bool{}
	for rows.Next() {
		var id int64
		var r sealRow
		var seal string
		if err := rows.Scan(&id, &r.uid, &r.station, &r.lineID, &r.image, &r.modelDigest, &r.seedLabel, &r.modelSignKey, &seal); err != nil {
			return nil, fmt.Errorf("ledger: verify batches: %w", err)
		}
		found[id] = true
		rep.Batches++
		p := Problem{Table: "batches", Row: id}
		if l.d == postgresDialect {
			p.Station = r.station
		}
		switch {
		case seal == "":
			p.Why = "image_seal is empty: the seal was removed"
		case seal != imageSeal(r):
			p.Why = fmt.Sprintf("image_seal does not cover the batch as it is (image %q, model digest %q, seed label %q, sign key %q): its image identity was changed",
				r.image, r.modelDigest, r.seedLabel, r.modelSignKey)
		default:
			continue
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: verify batches: %w", err)
	}
	for _, id := range ids {
		if !found[id] {
			out = append(out, Problem{Table: "batches", Row: id, Why: "the batch was deleted"})
			found[id] = true
		}
	}
	return out, nil
}

// finishReport puts a report's problems in order (the schema's first,
// then the rows' by row), names the first and reads the chain head.
// On a factory ledger, chains names the benches whose heads the report
// gives (nil: every bench's, and the count of every row).
func (l *Ledger) finishReport(ctx context.Context, rep *Report, schema, rows []Problem, chains []string) error {
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Row < rows[j].Row })
	rep.Problems = append(schema, rows...)
	if rep.Problems == nil {
		rep.Problems = []Problem{}
	}
	rep.OK = len(rep.Problems) == 0
	if !rep.OK {
		rep.First = &rep.Problems[len(schema)%len(rep.Problems)]
	}
	var err error
	if l.d == postgresDialect && chains != nil {
		rep.Chains = map[string]ChainHead{}
		for _, st := range chains {
			h, err := l.StationChainHead(ctx, st)
			if err != nil {
				return err
			}
			rep.Chains[st] = h
			rep.Head.Rows += h.Rows
		}
		return nil
	}
	if rep.Head, err = l.ChainHead(ctx); err != nil || l.d != postgresDialect {
		return err
	}
	rep.Chains, err = l.stationHeads(ctx)
	return err
}

// firstGaps finds the first deleted row of each chain whose positions do
// not run 1...n.
func (l *Ledger) firstGaps(ctx context.Context) ([]Problem, error) {
	key, seq := l.d.chainKey(), l.d.chainSeq()
	rows, err := l.r.QueryContext(ctx, `SELECT `+key+`, count(*), max(`+seq+`) FROM serial_assertions GROUP BY `+key+`
		HAVING count(*) != max(`+seq+`) ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("ledger: verify serial assertions: %w", err)
	}
	type chain struct {
		key     string
		n, last int64
	}
	var broken []chain
	for rows.Next() {
		var c chain
		if err := rows.Scan(&c.key, &c.n, &c.last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("ledger: verify serial assertions: %w", err)
		}
		broken = append(broken, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: verify serial assertions: %w", err)
	}
	var out []Problem
	for _, c := range broken {
		var missing int64
		err := l.r.QueryRowContext(ctx, `SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM serial_assertions WHERE `+key+` = ?1 AND `+seq+` = 1)
			UNION ALL SELECT a.`+seq+` + 1 FROM serial_assertions a
			WHERE `+l.d.chainKeyOf("a")+` = ?1 AND a.`+seq+` < ?2 AND NOT EXISTS (SELECT 1 FROM serial_assertions b WHERE `+l.d.chainKeyOf("b")+` = ?1 AND b.`+seq+` = a.`+seq+` + 1)
			LIMIT 1`, c.key, c.last).Scan(&missing)
		if err != nil {
			return nil, fmt.Errorf("ledger: verify serial assertions: %w", err)
		}
		out = append(out, Problem{Table: "serial_assertions", Row: missing, Station: c.key,
			Why: fmt.Sprintf("the row was deleted (%d rows hold ids up to %d)", c.n, c.last)})
	}
	return out, nil
}

func idSpan(a, b int64) string {
	if a == b {
		return fmt.Sprintf("row %d was", a)
	}
	return fmt.Sprintf("rows %d-%d were", a, b)
}

// pgTrigger is one of the factory ledger's guards: its table and the
// function it runs.
var pgTriggerDef = regexp.MustCompile(`(?s)CREATE TRIGGER (\w+) BEFORE \w+ ON (\w+)\s+FOR EACH \w+ EXECUTE FUNCTION (\w+)\(([^;]*);`)
var pgFunctionDef = regexp.MustCompile(`(?s)CREATE FUNCTION (\w+)\(\) RETURNS trigger LANGUAGE plpgsql AS \$\$(.*?)\$\$;`)

// verifyPGTriggers checks that every guard of the factory ledger is there,
// enabled, on its table, running its function, and that each function's
// body is the one the migrations wrote.
func (l *Ledger) verifyPGTriggers(ctx context.Context) ([]Problem, int, error) {
	type trig struct{ table, fn, def string }
	want := map[string]trig{}
	bodies := map[string]string{}
	for _, m := range pgMigrations {
		for _, c := range pgTriggerDef.FindAllStringSubmatch(m.sql, -1) {
			want[c[1]] = trig{c[2], c[3], normalizeSQL(c[0])}
		}
		for _, f := range pgFunctionDef.FindAllStringSubmatch(m.sql, -1) {
			bodies[f[1]] = normalizeSQL(f[2])
		}
	}
	rows, err := l.r.QueryContext(ctx, `SELECT t.tgname, c.relname, p.proname, p.prosrc, t.tgenabled,
		replace(pg_get_triggerdef(t.oid), ' ON ' || quote_ident(n.nspname) || '.', ' ON ')
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE NOT t.tgisinternal AND n.nspname = current_schema()`)
	if err != nil {
		return nil, 0, fmt.Errorf("ledger: verify triggers: %w", err)
	}
	defer rows.Close()
	type have struct{ table, fn, src, enabled, def string }
	got := map[string]have{}
	for rows.Next() {
		var name string
		var h have
		if err := rows.Scan(&name, &h.table, &h.fn, &h.src, &h.enabled, &h.def); err != nil {
			return nil, 0, fmt.Errorf("ledger: verify triggers: %w", err)
		}
		got[name] = h
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("ledger: verify triggers: %w", err)
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []Problem
	for _, n := range names {
		w, h := want[n], got[n]
		switch {
		case h.table == "":
			out = append(out, Problem{Table: "pg_trigger", Why: fmt.Sprintf("trigger %s is missing: it was dropped", n)})
		case h.table != w.table || h.fn != w.fn || normalizeSQL(h.src) != bodies[w.fn] || normalizeSQL(h.def) != w.def:
			out = append(out, Problem{Table: "pg_trigger", Why: fmt.Sprintf("trigger %s on %s is not the one the ledger wrote", n, h.table)})
		case h.enabled == "D":
			out = append(out, Problem{Table: "pg_trigger", Why: fmt.Sprintf("trigger %s on %s is disabled", n, h.table)})
		}
	}
	return out, len(names), nil
}

// stationHeads is the head of each bench's chain in a factory ledger.
func (l *Ledger) stationHeads(ctx context.Context) (map[string]ChainHead, error) {
	rows, err := l.r.QueryContext(ctx, `SELECT a.station_id, h.n, a.link_sha256 FROM serial_assertions a
		JOIN (SELECT station_id, max(seq) AS seq, count(*) AS n FROM serial_assertions GROUP BY station_id) h
		ON h.station_id = a.station_id AND h.seq = a.seq`)
	if err != nil {
		return nil, fmt.Errorf("ledger: chain heads: %w", err)
	}
	defer rows.Close()
	out := map[string]ChainHead{}
	for rows.Next() {
		var st string
		var h ChainHead
		if err := rows.Scan(&st, &h.Rows, &h.Link); err != nil {
			return nil, fmt.Errorf("ledger: chain heads: %w", err)
		}
		out[st] = h
	}
	return out, rows.Err()
}
