package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/flashstation/flashstation/ledger/record"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// Station is the bench PC that owns the ledger.
type Station struct {
	ID       string
	Hostname string
}

// EnsureStation records the station once; later calls update its hostname.
func (l *Ledger) EnsureStation(ctx context.Context, s Station) error {
	id := s.ID
	l.station.Store(&id)
	return l.write(ctx, func(tx *txn) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO stations(id, hostname, created_at) VALUES (?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET hostname = excluded.hostname`, s.ID, s.Hostname, l.stamp(time.Time{}))
		if err != nil {
			return fmt.Errorf("ledger: record station: %w", err)
		}
		return nil
	})
}

// Line is a production line as recorded.
type Line struct {
	ID        string
	StationID string
	Name      string
	BrandID   string
	Model     string
}

// EnsureLine records a line or updates its name, brand and model.
func (l *Ledger) EnsureLine(ctx context.Context, ln Line) error {
	now := l.stamp(time.Time{})
	conflict := "ON CONFLICT(id) DO UPDATE SET station_id = excluded.station_id,"
	if l.d == postgresDialect {
		conflict = "ON CONFLICT(station_id, id) DO UPDATE SET"
	}
	return l.write(ctx, func(tx *txn) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO lines(id, station_id, name, brand_id, model, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) `+conflict+` name = excluded.name,
				brand_id = excluded.brand_id, model = excluded.model, updated_at = excluded.updated_at`,
			ln.ID, ln.StationID, ln.Name, ln.BrandID, ln.Model, now, now)
		if err != nil {
			return fmt.Errorf("ledger: record line %s: %w", ln.ID, err)
		}
		return nil
	})
}

// Lines returns every recorded line.
func (l *Ledger) Lines(ctx context.Context) ([]Line, error) {
	rows, err := l.r.QueryContext(ctx, `SELECT id, station_id, name, brand_id, model FROM lines ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("ledger: lines: %w", err)
	}
	defer rows.Close()
	var out []Line
	for rows.Next() {
		var ln Line
		if err := rows.Scan(&ln.ID, &ln.StationID, &ln.Name, &ln.BrandID, &ln.Model); err != nil {
			return nil, err
		}
		out = append(out, ln)
	}
	return out, rows.Err()
}

// Batch states.
const (
	BatchOpen   = "open"
	BatchClosed = "closed"
)

// Why a batch closed.
const (
	BatchComplete = "complete" // its planned boards are done
	BatchOperator = "operator" // the operator ended it
	BatchStopped  = "stopped"  // the station stopped cleanly with it open
)

// Batch is one production run on a line.
type Batch struct {
	ID          int64
	LineID      string
	Operator    string
	Planned     int
	ImageSHA256 string
	State       string
	CloseReason string // BatchComplete, BatchOperator or BatchStopped once closed
	StartedAt   time.Time
	ClosedAt    time.Time
	UID         string // globally unique (UUIDv7); set by the ledger
	StationID   string // the bench that ran it; set by the ledger
	// The identity of the image the identity gate passed (seed.Identity),
	// recorded with the batch and shown with each of its units; empty for
	// a batch started before the gate (schema version 5).
	ModelDigest  string // SHA3-384 of the model assertion, base64url
	SeedLabel    string // the recovery system label (UC20 and later; empty on UC16/18)
	ModelSignKey string // the sign-key-sha3-384 of the model assertion
	// ImageSeal is the SHA-256 of the batch identity (chain.go); set by
	// the ledger, checked by Verify.
	ImageSeal string
}

// Image is the identity of the image the batch flashed.
func (b Batch) Image() ImageIdentity {
	return ImageIdentity{SHA256: b.ImageSHA256, ModelDigest: b.ModelDigest, SeedLabel: b.SeedLabel,
		ModelSignKey: b.ModelSignKey, Seal: b.ImageSeal}
}

// ImageIdentity is the image a unit was flashed with, as its batch
// records it: what the evidence of a unit shows.
type ImageIdentity struct {
	SHA256       string `json:"image_sha256"`
	ModelDigest  string `json:"model_digest"`
	SeedLabel    string `json:"seed_label"`
	ModelSignKey string `json:"model_sign_key"`
	Seal         string `json:"image_seal"`
}

// maxIdentityField bounds each field of an image identity (a SHA3-384
// in base64url is 64 characters, a seed label a few dozen).
const maxIdentityField = 512

// checkIdentity refuses identity fields that are not text a ledger can
// hold and forward unchanged (NUL bytes, invalid UTF-8, too long).
func checkIdentity(b Batch) error {
	for _, f := range []struct{ name, v string }{{"image sha256", b.ImageSHA256}, {"model digest", b.ModelDigest},
		{"seed label", b.SeedLabel}, {"model sign key", b.ModelSignKey}} {
		switch {
		case len(f.v) > maxIdentityField:
			return fmt.Errorf("%s is %d bytes long (at most %d)", f.name, len(f.v), maxIdentityField)
		case strings.IndexByte(f.v, 0) >= 0 || !utf8.ValidString(f.v):
			return fmt.Errorf("%s %q is not valid UTF-8 text", f.name, f.v)
		}
	}
	return nil
}

// StartBatch opens a batch and returns its id. Its image identity
// (ImageSHA256, ModelDigest, SeedLabel, ModelSignKey) is recorded with it
// and sealed; it never changes after.
func (l *Ledger) StartBatch(ctx context.Context, b Batch) (int64, error) {
	var id int64
	err := l.write(ctx, func(tx *txn) error {
		station, err := l.stationFor(ctx, tx, `SELECT station_id FROM lines WHERE id = ?`, b.LineID)
		if err != nil {
			return fmt.Errorf("ledger: start batch: %w", err)
		}
		if err := checkIdentity(b); err != nil {
			return fmt.Errorf("ledger: start batch: %w", err)
		}
		at := l.at(b.StartedAt)
		b.UID, b.StationID = NewUID(at), station
		err = tx.QueryRowContext(ctx, `INSERT INTO batches(uid, station_id, line_id, operator, planned, image_sha256, state, started_at,
			model_digest, seed_label, model_sign_key, image_seal)
			VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?) RETURNING id`, b.UID, station, b.LineID, b.Operator, b.Planned, b.ImageSHA256,
			fmtTime(at), b.ModelDigest, b.SeedLabel, b.ModelSignKey, imageSeal(sealOf(b))).Scan(&id)
		if err != nil {
			return fmt.Errorf("ledger: start batch: %w", err)
		}
		return nil
	})
	return id, err
}

// CloseBatch closes an open batch, saying why (BatchComplete,
// BatchOperator or BatchStopped). A new run opens a new batch.
func (l *Ledger) CloseBatch(ctx context.Context, id int64, reason string) error {
	switch reason {
	case BatchComplete, BatchOperator, BatchStopped:
	default:
		return fmt.Errorf("ledger: close batch %d: %q is not a reason to close", id, reason)
	}
	return l.write(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `UPDATE batches SET state = 'closed', close_reason = ?, closed_at = ? WHERE id = ? AND state = 'open'`,
			reason, l.stamp(time.Time{}), id)
		if err != nil {
			return fmt.Errorf("ledger: close batch %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("ledger: close batch %d: %w (or already closed)", id, ErrNotFound)
		}
		return nil
	})
}

const batchColumns = `id, line_id, operator, planned, image_sha256, state, close_reason, started_at, closed_at, uid, station_id,
	model_digest, seed_label, model_sign_key, image_seal`

func scanBatch(sc interface{ Scan(...any) error }) (Batch, error) {
	var b Batch
	var started string
	var closed sql.NullString
	err := sc.Scan(&b.ID, &b.LineID, &b.Operator, &b.Planned, &b.ImageSHA256, &b.State, &b.CloseReason, &started, &closed,
		&b.UID, &b.StationID, &b.ModelDigest, &b.SeedLabel, &b.ModelSignKey, &b.ImageSeal)
	b.StartedAt, b.ClosedAt = parseTime(started), parseNullTime(closed)
	return b, err
}

// Batch returns one batch.
func (l *Ledger) Batch(ctx context.Context, id int64) (Batch, error) {
	b, err := scanBatch(l.r.QueryRowContext(ctx, `SELECT `+batchColumns+` FROM batches WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return b, fmt.Errorf("ledger: batch %d: %w", id, ErrNotFound)
	}
	return b, err
}

// OpenBatches returns a station's batches still open, oldest first (a
// restarted station resumes them; another station's are not its own).
func (l *Ledger) OpenBatches(ctx context.Context, stationID string) ([]Batch, error) {
	rows, err := l.r.QueryContext(ctx, `SELECT `+batchColumns+` FROM batches WHERE state = 'open'
		AND station_id = ? ORDER BY id`, stationID)
	if err != nil {
		return nil, fmt.Errorf("ledger: open batches: %w", err)
	}
	defer rows.Close()
	var out []Batch
	for rows.Next() {
		b, err := scanBatch(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// Unit states: running, then one outcome. Only pass and fail say
// anything of the board, so only they enter yield and the failure pareto;
// error and aborted are counted apart.
const (
	UnitRunning = "running"
	UnitPass    = "pass"
	UnitFail    = "fail"    // the board's fault (write error, kernel panic, ...)
	UnitError   = "error"   // the station's fault (storage, boot trigger, vault)
	UnitAborted = "aborted" // stopped: the operator quit, the station stopped, the batch ended
)

// Unit is one board's attempt in a batch.
type Unit struct {
	ID           int64
	BatchID      int64
	LineID       string
	SlotID       string
	Attempt      int
	HWSerial     string // the board's hardware serial
	Serial       string // the serial in its serial assertion
	State        string
	Stage        string
	Reason       string // reason code of a failure
	Detail       string // what QA can act on
	MappedBytes  int64
	WrittenBytes int64
	FlashTime    time.Duration
	VerifyTime   time.Duration
	BootTime     time.Duration
	StartedAt    time.Time
	FinishedAt   time.Time
	UID          string // globally unique (UUIDv7); set by the ledger
	StationID    string // the bench that ran it; set by the ledger
}

// StartUnit records a board's new attempt and returns its id. The attempt
// number counts earlier units of the same board (hardware serial) in the
// batch.
func (l *Ledger) StartUnit(ctx context.Context, u Unit) (int64, error) {
	var id int64
	err := l.write(ctx, func(tx *txn) error {
		attempt := 1
		if u.HWSerial != "" {
			if err := tx.QueryRowContext(ctx, `SELECT count(*) + 1 FROM units WHERE batch_id = ? AND hw_serial = ?`,
				u.BatchID, u.HWSerial).Scan(&attempt); err != nil {
				return fmt.Errorf("ledger: start unit: %w", err)
			}
		}
		station, err := l.stationFor(ctx, tx, `SELECT station_id FROM batches WHERE id = ?`, u.BatchID)
		if err != nil {
			return fmt.Errorf("ledger: start unit: %w", err)
		}
		at := l.at(u.StartedAt)
		err = tx.QueryRowContext(ctx, `INSERT INTO units(uid, station_id, batch_id, line_id, slot_id, attempt, hw_serial, state, stage, started_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?) RETURNING id`,
			NewUID(at), station, u.BatchID, u.LineID, u.SlotID, attempt, u.HWSerial, u.Stage, fmtTime(at)).Scan(&id)
		if err != nil {
			return fmt.Errorf("ledger: start unit: %w", err)
		}
		return nil
	})
	return id, err
}

// UnitProgress is what a running unit learns along the way; zero fields are
// left unchanged.
type UnitProgress struct {
	HWSerial     string
	Serial       string
	Stage        string
	MappedBytes  int64
	WrittenBytes int64
	FlashTime    time.Duration
	VerifyTime   time.Duration
	BootTime     time.Duration
}

// UpdateUnit records progress of a unit.
func (l *Ledger) UpdateUnit(ctx context.Context, id int64, p UnitProgress) error {
	return l.write(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `UPDATE units SET
			hw_serial = CASE WHEN CAST(?1 AS TEXT) != '' THEN CAST(?1 AS TEXT) ELSE hw_serial END,
			serial = CASE WHEN CAST(?2 AS TEXT) != '' THEN CAST(?2 AS TEXT) ELSE serial END,
			stage = CASE WHEN CAST(?3 AS TEXT) != '' THEN CAST(?3 AS TEXT) ELSE stage END,
			mapped_bytes = CASE WHEN CAST(?4 AS BIGINT) != 0 THEN CAST(?4 AS BIGINT) ELSE mapped_bytes END,
			written_bytes = CASE WHEN CAST(?5 AS BIGINT) != 0 THEN CAST(?5 AS BIGINT) ELSE written_bytes END,
			flash_ms = CASE WHEN CAST(?6 AS BIGINT) != 0 THEN CAST(?6 AS BIGINT) ELSE flash_ms END,
			verify_ms = CASE WHEN CAST(?7 AS BIGINT) != 0 THEN CAST(?7 AS BIGINT) ELSE verify_ms END,
			boot_ms = CASE WHEN CAST(?8 AS BIGINT) != 0 THEN CAST(?8 AS BIGINT) ELSE boot_ms END
			WHERE id = ?9`,
			p.HWSerial, p.Serial, p.Stage, p.MappedBytes, p.WrittenBytes,
			p.FlashTime.Milliseconds(), p.VerifyTime.Milliseconds(), p.BootTime.Milliseconds(), id)
		if err != nil {
			return fmt.Errorf("ledger: update unit %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("ledger: update unit %d: %w", id, ErrNotFound)
		}
		return nil
	})
}

// FinishUnit ends a running unit with an outcome (UnitPass, UnitFail,
// UnitError or UnitAborted), a reason code and a detail. A unit is
// finished once.
func (l *Ledger) FinishUnit(ctx context.Context, id int64, state, reason, detail string) error {
	switch state {
	case UnitPass, UnitFail, UnitError, UnitAborted:
	default:
		return fmt.Errorf("ledger: finish unit %d: %q is not a verdict", id, state)
	}
	return l.write(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `UPDATE units SET state = ?, reason = ?, detail = ?, finished_at = ?
			WHERE id = ? AND state = 'running'`, state, reason, detail, l.stamp(time.Time{}), id)
		if err != nil {
			return fmt.Errorf("ledger: finish unit %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("ledger: finish unit %d: %w (or already finished)", id, ErrNotFound)
		}
		return nil
	})
}

// InterruptRunning ends every unit of a station still running as aborted,
// with reason and detail (after the station was killed), and returns their
// ids. Their events and transcripts stay; other stations' units are not
// touched.
func (l *Ledger) InterruptRunning(ctx context.Context, stationID, reason, detail string) ([]int64, error) {
	var ids []int64
	err := l.write(ctx, func(tx *txn) error {
		// It ended when its last event was recorded, not at the restart:
		// the time the station was down is no unit's work.
		greatest := "max"
		if l.d == postgresDialect {
			greatest = "greatest"
		}
		rows, err := tx.QueryContext(ctx, `UPDATE units SET state = 'aborted', reason = ?, detail = ?,
			finished_at = `+greatest+`(started_at, coalesce((SELECT max(at) FROM events WHERE events.unit_id = units.id), started_at))
			WHERE state = 'running' AND station_id = ? RETURNING id`, reason, detail, stationID)
		if err != nil {
			return fmt.Errorf("ledger: interrupt running units: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	return ids, err
}

const unitColumns = `id, batch_id, line_id, slot_id, attempt, hw_serial, serial, state, stage, reason, detail,
	mapped_bytes, written_bytes, flash_ms, verify_ms, boot_ms, started_at, finished_at, uid, station_id`

func scanUnit(sc interface{ Scan(...any) error }) (Unit, error) {
	var u Unit
	var flash, verify, boot int64
	var started string
	var finished sql.NullString
	err := sc.Scan(&u.ID, &u.BatchID, &u.LineID, &u.SlotID, &u.Attempt, &u.HWSerial, &u.Serial, &u.State, &u.Stage,
		&u.Reason, &u.Detail, &u.MappedBytes, &u.WrittenBytes, &flash, &verify, &boot, &started, &finished, &u.UID, &u.StationID)
	u.FlashTime, u.VerifyTime, u.BootTime = time.Duration(flash)*time.Millisecond,
		time.Duration(verify)*time.Millisecond, time.Duration(boot)*time.Millisecond
	u.StartedAt, u.FinishedAt = parseTime(started), parseNullTime(finished)
	return u, err
}

// Unit returns one unit.
func (l *Ledger) Unit(ctx context.Context, id int64) (Unit, error) {
	u, err := scanUnit(l.r.QueryRowContext(ctx, `SELECT `+unitColumns+` FROM units WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("ledger: unit %d: %w", id, ErrNotFound)
	}
	return u, err
}

// UnitFilter selects units; zero fields match everything.
type UnitFilter struct {
	BatchID  int64
	Batches  []int64 // several batches (a station's lines each run one)
	LineID   string
	State    string
	HWSerial string
	Serial   string // exact serial; see SerialPrefix
	// SerialPrefix matches either the hardware serial or the assigned
	// serial by prefix.
	SerialPrefix string
	// Match finds units by any part (case-insensitive, ASCII folding) of
	// the hardware serial, the assigned serial, the slot, the reason
	// code or the batch id (QA search). It is a plain substring: % and _
	// are not wildcards.
	Match string
	// ByFinish orders finished units by finish time, newest first, the
	// unfinished ones after them (newest first); otherwise units are
	// ordered by id, newest first.
	ByFinish bool
	// Since and Until bound when units started: [Since, Until).
	Since, Until time.Time
	// StationID keeps one bench's units (a factory ledger holds many).
	StationID string
	Limit     int
}

// Units returns the units matching f, newest first.
func (l *Ledger) Units(ctx context.Context, f UnitFilter) ([]Unit, error) {
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if f.BatchID != 0 {
		add("batch_id = ?", f.BatchID)
	}
	if f.LineID != "" {
		add("line_id = ?", f.LineID)
	}
	if len(f.Batches) > 0 {
		where = append(where, "batch_id IN ("+placeholders(len(f.Batches))+")")
		for _, b := range f.Batches {
			args = append(args, b)
		}
	}
	if f.State != "" {
		add("state = ?", f.State)
	}
	if f.HWSerial != "" {
		add("hw_serial = ?", f.HWSerial)
	}
	if f.Serial != "" {
		add("serial = ?", f.Serial)
	}
	if !f.Since.IsZero() {
		add("started_at >= ?", fmtTime(f.Since))
	}
	if !f.Until.IsZero() {
		add("started_at < ?", fmtTime(f.Until))
	}
	if f.StationID != "" {
		add("station_id = ?", f.StationID)
	}
	if f.SerialPrefix != "" {
		p := escapeLike(f.SerialPrefix) + "%"
		where = append(where, `(hw_serial LIKE ? ESCAPE '\' OR serial LIKE ? ESCAPE '\')`)
		args = append(args, p, p)
	}
	if f.Match != "" {
		// instr, not LIKE: nothing in the text is a wildcard.
		where = append(where, `(instr(lower(hw_serial), lower(?)) > 0 OR instr(lower(serial), lower(?)) > 0
			OR instr(lower(slot_id), lower(?)) > 0 OR instr(lower(reason), lower(?)) > 0
			OR instr(CAST(batch_id AS TEXT), ?) > 0)`)
		for range 5 {
			args = append(args, f.Match)
		}
	}
	q := `SELECT ` + unitColumns + ` FROM units`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.ByFinish {
		q += " ORDER BY finished_at IS NULL, finished_at DESC, id DESC"
	} else {
		q += " ORDER BY id DESC"
	}
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := l.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: units: %w", err)
	}
	defer rows.Close()
	var out []Unit
	for rows.Next() {
		u, err := scanUnit(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// placeholders returns n comma-separated SQL parameters.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func escapeLike(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// Event is one entry of the append-only event stream.
type Event struct {
	ID      int64
	At      time.Time
	BatchID int64 // 0: none
	UnitID  int64 // 0: none
	SlotID  string
	Kind    string // e.g. stage, progress, log, verdict
	Stage   string
	Message string
	Data    json.RawMessage // optional JSON object
}

// AppendEvents records events in one transaction.
func (l *Ledger) AppendEvents(ctx context.Context, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	return l.write(ctx, func(tx *txn) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO events(uid, station_id, at, batch_id, unit_id, slot_id, kind, stage, message, data)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("ledger: append events: %w", err)
		}
		defer stmt.Close()
		stations := map[int64]string{}
		for _, e := range evs {
			station, ok := stations[e.BatchID]
			if !ok {
				if station, err = l.stationFor(ctx, tx, `SELECT station_id FROM batches WHERE id = ?`, e.BatchID); err != nil {
					return fmt.Errorf("ledger: append events: %w", err)
				}
				stations[e.BatchID] = station
			}
			if e.Kind == "" {
				return fmt.Errorf("ledger: append events: an event needs a kind")
			}
			data := "{}"
			if len(e.Data) > 0 {
				if !json.Valid(e.Data) {
					return fmt.Errorf("ledger: append events: data of %s event is not JSON", e.Kind)
				}
				data = string(e.Data)
			}
			at := l.at(e.At)
			if _, err := stmt.ExecContext(ctx, NewUID(at), station, fmtTime(at), nullInt(e.BatchID), nullInt(e.UnitID), e.SlotID,
				e.Kind, e.Stage, e.Message, data); err != nil {
				return fmt.Errorf("ledger: append events: %w", err)
			}
		}
		return nil
	})
}

// Events returns a unit's events in order.
func (l *Ledger) Events(ctx context.Context, unitID int64) ([]Event, error) {
	rows, err := l.r.QueryContext(ctx, `SELECT id, at, coalesce(batch_id, 0), coalesce(unit_id, 0), slot_id, kind, stage, message, data
		FROM events WHERE unit_id = ? ORDER BY id`, unitID)
	if err != nil {
		return nil, fmt.Errorf("ledger: events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at, data string
		if err := rows.Scan(&e.ID, &at, &e.BatchID, &e.UnitID, &e.SlotID, &e.Kind, &e.Stage, &e.Message, &data); err != nil {
			return nil, err
		}
		e.At, e.Data = parseTime(at), json.RawMessage(data)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Ways a serial assertion reaches the station.
const (
	ViaProxy   = record.ViaProxy
	ViaConsole = record.ViaConsole
	ViaImport  = record.ViaImport
)

// SerialAssertion is a captured serial assertion and what the station knew
// when it arrived (record.SerialAssertion, which the spool and the proxy
// carry without the ledger).
type SerialAssertion = record.SerialAssertion

// RecordSerialAssertion stores a serial assertion and returns only when it
// is synced to disk. Recording the same text again is harmless: it returns
// the first record's id with created false (and links the unit when the
// first record had none).
func (l *Ledger) RecordSerialAssertion(ctx context.Context, a SerialAssertion) (id int64, created bool, err error) {
	if len(a.Text) == 0 || a.Serial == "" || a.BrandID == "" || a.Model == "" || a.DeviceKeyID == "" || a.LineID == "" {
		return 0, false, fmt.Errorf("ledger: record serial assertion: text, brand, model, serial, device key and line are required")
	}
	switch a.Via {
	case ViaProxy, ViaConsole, ViaImport:
	default:
		return 0, false, fmt.Errorf("ledger: record serial assertion: unknown source %q", a.Via)
	}
	sum := sha256.Sum256(a.Text)
	hash := hex.EncodeToString(sum[:])
	err = l.durableWrite(ctx, func(tx *txn) error {
		station, err := l.stationFor(ctx, tx, `SELECT station_id FROM lines WHERE id = ?`, a.LineID)
		if err != nil {
			return fmt.Errorf("ledger: record serial assertion: %w", err)
		}
		err = tx.QueryRowContext(ctx, `SELECT id FROM serial_assertions WHERE text_sha256 = ? AND `+l.d.chainKey()+` = ?`,
			hash, l.d.chainOf(station)).Scan(&id)
		switch {
		case err == nil:
			if a.UnitID != 0 {
				_, err = tx.ExecContext(ctx, `UPDATE serial_assertions SET unit_id = ? WHERE id = ? AND unit_id IS NULL`, a.UnitID, id)
			}
			return err
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("ledger: record serial assertion: %w", err)
		}
		// The next link of the chain (chain.go), in this transaction: the
		// write lock is held since BEGIN, so no other row comes between.
		next, prev, err := nextLink(ctx, tx, station)
		if err != nil {
			return fmt.Errorf("ledger: record serial assertion: %w", err)
		}
		at := l.at(a.ReceivedAt)
		row := chainRow{id: next, textSHA256: hash, brand: a.BrandID, model: a.Model, serial: a.Serial,
			revision: int64(a.Revision), deviceKeyID: a.DeviceKeyID, lineID: a.LineID, via: a.Via,
			duplicate: a.Duplicate, receivedAt: fmtTime(at)}
		err = tx.QueryRowContext(ctx, `INSERT INTO serial_assertions(uid, station_id, `+l.d.chainSeq()+`, text, text_sha256, brand_id, model, serial, revision,
			device_key_id, line_id, unit_id, via, duplicate, received_at, prev_sha256, link_sha256)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			NewUID(at), station, next, string(a.Text), hash, row.brand, row.model, row.serial, row.revision, row.deviceKeyID, row.lineID,
			nullInt(a.UnitID), row.via, boolInt(row.duplicate), row.receivedAt, prev, chainLink(prev, row)).Scan(&id)
		if err != nil {
			return fmt.Errorf("ledger: record serial assertion: %w", err)
		}
		created = true
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return id, created, nil
}

// LinkSerialAssertion ties a recorded assertion to a unit (one captured
// before its unit was known). A link is made once: linking again to the
// same unit is harmless, to another unit an error (the ledger's triggers
// refuse it too).
func (l *Ledger) LinkSerialAssertion(ctx context.Context, id, unitID int64) error {
	return l.durableWrite(ctx, func(tx *txn) error {
		var cur sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT unit_id FROM serial_assertions WHERE id = ?`, id).Scan(&cur)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("ledger: link serial assertion %d: %w", id, ErrNotFound)
		case err != nil:
			return fmt.Errorf("ledger: link serial assertion %d: %w", id, err)
		case cur.Valid && cur.Int64 == unitID:
			return nil
		case cur.Valid:
			return fmt.Errorf("ledger: link serial assertion %d to unit %d: it is linked to unit %d, and a link is made once", id, unitID, cur.Int64)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE serial_assertions SET unit_id = ? WHERE id = ?`, unitID, id); err != nil {
			return fmt.Errorf("ledger: link serial assertion %d: %w", id, err)
		}
		return nil
	})
}

// AssertionFilter selects serial assertions; zero fields match everything.
type AssertionFilter struct {
	LineID   string
	Serial   string
	UnitID   int64
	Since    time.Time // received at or after
	Unlinked bool      // only those that matched no unit
	// StationID keeps one bench's (a factory ledger holds many).
	StationID string
}

// SerialAssertions returns the recorded serial assertions matching f in the
// order they were received.
func (l *Ledger) SerialAssertions(ctx context.Context, f AssertionFilter) ([]SerialAssertion, error) {
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if f.LineID != "" {
		add("line_id = ?", f.LineID)
	}
	if f.Serial != "" {
		add("serial = ?", f.Serial)
	}
	if f.UnitID != 0 {
		add("unit_id = ?", f.UnitID)
	}
	if !f.Since.IsZero() {
		add("received_at >= ?", fmtTime(f.Since))
	}
	if f.Unlinked {
		where = append(where, "unit_id IS NULL")
	}
	if f.StationID != "" {
		add("station_id = ?", f.StationID)
	}
	q := `SELECT id, text, brand_id, model, serial, revision, device_key_id, line_id, coalesce(unit_id, 0), via, duplicate, received_at,
		station_id, ` + l.d.chainSeq() + `
		FROM serial_assertions`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if l.d == postgresDialect {
		// Several benches' rows: in the order received, each bench's in
		// its chain's order.
		q += " ORDER BY received_at, station_id, seq"
	} else {
		q += " ORDER BY id"
	}
	rows, err := l.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: serial assertions: %w", err)
	}
	defer rows.Close()
	var out []SerialAssertion
	for rows.Next() {
		var a SerialAssertion
		var text, received string
		if err := rows.Scan(&a.ID, &text, &a.BrandID, &a.Model, &a.Serial, &a.Revision, &a.DeviceKeyID, &a.LineID,
			&a.UnitID, &a.Via, &a.Duplicate, &received, &a.StationID, &a.Seq); err != nil {
			return nil, err
		}
		a.Text, a.ReceivedAt = []byte(text), parseTime(received)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Transcript kinds.
const (
	TranscriptRaw   = "raw"
	TranscriptClean = "clean"
)

// Transcript is a console transcript file kept next to the ledger.
type Transcript struct {
	ID     int64
	UnitID int64
	SlotID string
	Kind   string // TranscriptRaw or TranscriptClean
	Path   string
	Size   int64
	SHA256 string
	// Content is the file as the factory ledger holds it (nil on a
	// bench, whose files are next to its ledger).
	Content []byte
}

// AddTranscript records a transcript file.
func (l *Ledger) AddTranscript(ctx context.Context, t Transcript) (int64, error) {
	var id int64
	err := l.write(ctx, func(tx *txn) error {
		station, err := l.stationFor(ctx, tx, `SELECT station_id FROM units WHERE id = ?`, t.UnitID)
		if err != nil {
			return fmt.Errorf("ledger: add transcript: %w", err)
		}
		at := l.at(time.Time{})
		err = tx.QueryRowContext(ctx, `INSERT INTO transcripts(uid, station_id, unit_id, slot_id, kind, path, size, sha256, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, NewUID(at), station, nullInt(t.UnitID), t.SlotID, t.Kind, t.Path,
			t.Size, t.SHA256, fmtTime(at)).Scan(&id)
		if err != nil {
			return fmt.Errorf("ledger: add transcript: %w", err)
		}
		return nil
	})
	return id, err
}

// Transcripts returns a unit's transcripts.
func (l *Ledger) Transcripts(ctx context.Context, unitID int64) ([]Transcript, error) {
	content := "NULL"
	if l.d == postgresDialect {
		content = "content"
	}
	rows, err := l.r.QueryContext(ctx, `SELECT id, coalesce(unit_id, 0), slot_id, kind, path, size, sha256, `+content+`
		FROM transcripts WHERE unit_id = ? ORDER BY id`, unitID)
	if err != nil {
		return nil, fmt.Errorf("ledger: transcripts: %w", err)
	}
	defer rows.Close()
	var out []Transcript
	for rows.Next() {
		var t Transcript
		var packed []byte
		if err := rows.Scan(&t.ID, &t.UnitID, &t.SlotID, &t.Kind, &t.Path, &t.Size, &t.SHA256, &packed); err != nil {
			return nil, err
		}
		if packed != nil {
			if t.Content, err = unpackTranscript(packed); err != nil {
				return nil, fmt.Errorf("ledger: transcript %d: %w", t.ID, err)
			}
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
