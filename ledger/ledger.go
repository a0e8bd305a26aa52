// Package ledger is the station's durable record: stations, production
// lines, batches, units (one per board per attempt), the append-only event
// stream, every captured serial assertion and the console transcripts.
//
// It is a SQLite database (modernc.org/sqlite, pure Go) in WAL mode with
// embedded, versioned migrations. All writes of one process go through a
// single connection, so any number of goroutines can record at once without
// "database is locked"; readers use their own pool and never block the
// writer. Other processes (status, export) wait on a busy timeout.
//
// Serial assertions are the one record that must never be lost: a call to
// RecordSerialAssertion returns only after the row is synced to disk
// (synchronous=FULL for that transaction). Other writes use
// synchronous=NORMAL, which in WAL mode survives a crash of the process and
// loses at most the last transactions on power loss.
//
// The record is tamper-evident (schema version 3): triggers refuse changes
// to recorded serial assertions and finished units and any delete, the
// serial assertions form a hash chain (chain.go), and Verify and
// VerifyAssertions tell whether the file is still what the station wrote.
package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the ledger's name inside the station's data directory.
const FileName = "ledger.db"

// busyTimeout is how long a write waits, by default, for another
// process's lock.
const busyTimeout = 30 * time.Second

// Ledger is an open ledger. It is safe for concurrent use.
type Ledger struct {
	path string
	w    *db // SQLite: one connection, every write of this process
	r    *db // readers
	d    dialect
	now  func() time.Time
	busy time.Duration
	// station is the station that writes through this ledger, once
	// EnsureStation named it: the station of rows that have no line.
	station atomic.Pointer[string]
}

// Option changes how Open behaves.
type Option func(*Ledger)

// WithClock sets the clock used for record times (tests).
func WithClock(now func() time.Time) Option { return func(l *Ledger) { l.now = now } }

// WithBusyTimeout sets how long a write waits for another process's lock
// before it fails (default 30 s).
func WithBusyTimeout(d time.Duration) Option { return func(l *Ledger) { l.busy = d } }

// Open opens (creating if needed) the ledger at path and brings its schema
// to the current version.
func Open(ctx context.Context, path string, opts ...Option) (*Ledger, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create ledger directory: %w", err)
	}
	l := &Ledger{path: path, now: time.Now, busy: busyTimeout}
	for _, o := range opts {
		o(l)
	}
	w, err := sql.Open("sqlite", dsn(path, false, l.busy))
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	l.w = &db{DB: w}
	l.w.SetMaxOpenConns(1)
	l.w.SetMaxIdleConns(1)
	l.w.SetConnMaxLifetime(0)
	l.w.SetConnMaxIdleTime(0)
	if err := l.w.PingContext(ctx); err != nil {
		l.w.Close()
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	if err := migrate(ctx, l.w, len(migrations)); err != nil {
		l.w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn(path, true, l.busy))
	if err != nil {
		l.w.Close()
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	l.r = &db{DB: r}
	l.r.SetMaxOpenConns(8)
	return l, nil
}

// ErrReadOnly is the error of a write to a ledger opened read-only.
var ErrReadOnly = errors.New("ledger: opened read-only")

// OpenReadOnly opens an existing ledger for reading only: it creates
// nothing, migrates nothing and takes no write lock, so it works beside a
// running station and on a read-only copy (a read-only mount, an
// auditor's copy). A copy whose directory cannot hold SQLite's shared
// memory file is opened as immutable (refused when the copy holds a
// write-ahead log: immutable would not read it). Its schema must be the
// current one.
func OpenReadOnly(ctx context.Context, path string, opts ...Option) (*Ledger, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	l := &Ledger{path: path, now: time.Now, busy: busyTimeout}
	for _, o := range opts {
		o(l)
	}
	var firstErr error
	for _, immutable := range []bool{false, true} {
		d := dsn(path, true, l.busy) + "&mode=ro"
		if immutable {
			// Immutable reads the main file alone: a copy that holds a
			// write-ahead log too would show old rows without a word.
			if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
				return nil, fmt.Errorf("open ledger %s read-only: %w; its write-ahead log %s-wal holds rows the file does not, and SQLite can read it only where it may create %s-shm: "+
					"copy both files where the reader may write, or copy ledger.db once the station has stopped (it empties the log when it closes)", path, firstErr, path, path)
			}
			d += "&immutable=1"
		}
		raw, err := sql.Open("sqlite", d)
		rdb := &db{DB: raw}
		if err == nil {
			rdb.SetMaxOpenConns(8)
			var v int
			if v, err = schemaVersion(ctx, rdb, sqliteDialect); err == nil && v != len(migrations) {
				rdb.Close()
				return nil, fmt.Errorf("ledger %s has schema version %d, this flashstation reads version %d: open it once with a station of this version (it migrates), or use the flashstation that wrote it", path, v, len(migrations))
			}
		}
		if err == nil {
			l.r = rdb
			return l, nil
		}
		if raw != nil {
			raw.Close()
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, fmt.Errorf("open ledger %s read-only: %w", path, firstErr)
}

// ReadOnly reports whether the ledger was opened with OpenReadOnly.
func (l *Ledger) ReadOnly() bool { return l.w == nil }

// dsn builds the connection string. Pragmas apply to every connection.
func dsn(path string, readOnly bool, busy time.Duration) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		// Take the write lock at BEGIN: a transaction never fails half-way
		// with SQLITE_BUSY because another process wrote first.
		q.Set("_txlock", "immediate")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Path returns the database file's path.
func (l *Ledger) Path() string { return l.path }

// Close checkpoints the write-ahead log and closes the ledger.
func (l *Ledger) Close() error {
	var errs []error
	if l.r != nil {
		errs = append(errs, l.r.Close())
	}
	if l.w != nil && l.w != l.r && l.d == sqliteDialect {
		_, _ = l.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		errs = append(errs, l.w.Close())
	}
	return errors.Join(errs...)
}

// Checkpoint moves the write-ahead log into the database file and empties
// it (as Close does), so that a copy of the file alone is the whole
// ledger. It fails when a reader keeps the log from being emptied.
func (l *Ledger) Checkpoint(ctx context.Context) error {
	if l.w == nil {
		return ErrReadOnly
	}
	if l.d == postgresDialect {
		return nil
	}
	var busy, logPages, moved int
	if err := l.w.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &moved); err != nil {
		return fmt.Errorf("ledger: checkpoint: %w", err)
	}
	if busy != 0 {
		return errors.New("ledger: checkpoint: a reader holds the write-ahead log")
	}
	return nil
}

// Version returns the schema version of the open ledger.
func (l *Ledger) Version(ctx context.Context) (int, error) {
	return schemaVersion(ctx, l.r, l.d)
}

// Check runs SQLite's integrity check and returns an error describing any
// damage.
func (l *Ledger) Check(ctx context.Context) error {
	if l.d == postgresDialect {
		// PostgreSQL checks its own pages; this says it answers.
		return l.r.PingContext(ctx)
	}
	rows, err := l.r.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return err
		}
		if m != "ok" {
			msgs = append(msgs, m)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(msgs) > 0 {
		return fmt.Errorf("ledger %s is damaged: %v", l.path, msgs)
	}
	return nil
}

// write runs fn in one write transaction.
func (l *Ledger) write(ctx context.Context, fn func(tx *txn) error) error {
	if l.w == nil {
		return ErrReadOnly
	}
	return inTx(ctx, l.w, fn)
}

// inTx runs fn in a transaction of db (a pool or one connection) and
// commits it when fn succeeds.
func inTx(ctx context.Context, db interface {
	BeginTx(context.Context, *sql.TxOptions) (*txn, error)
}, fn func(tx *txn) error) error {
	return inTxWith(ctx, db, nil, fn)
}

// inTxWith is inTx with transaction options.
func inTxWith(ctx context.Context, db interface {
	BeginTx(context.Context, *sql.TxOptions) (*txn, error)
}, opts *sql.TxOptions, fn func(tx *txn) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("ledger: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ledger: commit: %w", err)
	}
	return nil
}

// durableWrite runs fn in one write transaction that is synced to disk
// before it returns (synchronous=FULL on the single write connection).
func (l *Ledger) durableWrite(ctx context.Context, fn func(tx *txn) error) (err error) {
	if l.w == nil {
		return ErrReadOnly
	}
	if l.d == postgresDialect {
		// Committed means on the server's disk, whatever the server's
		// default.
		return inTx(ctx, l.w, func(tx *txn) error {
			if _, err := tx.ExecContext(ctx, "SET LOCAL synchronous_commit = on"); err != nil {
				return fmt.Errorf("ledger: %w", err)
			}
			return fn(tx)
		})
	}
	conn, err := l.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=FULL"); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer func() {
		// Back to NORMAL for the other writes; a failure here leaves the
		// connection stricter, never looser.
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous=NORMAL"); rerr != nil && err == nil {
			err = fmt.Errorf("ledger: %w", rerr)
		}
	}()
	return inTx(ctx, conn, fn)
}

const timeFormat = "2006-01-02T15:04:05.000Z"

func (l *Ledger) stamp(t time.Time) string {
	if t.IsZero() {
		t = l.now()
	}
	return fmtTime(t)
}

// at is t, or now when t is zero.
func (l *Ledger) at(t time.Time) time.Time {
	if t.IsZero() {
		return l.now()
	}
	return t
}

// stationFor is the station of a new row: the station of its line, batch
// or unit (q selects it by id), else the ledger's own station. On a
// factory ledger a line belongs to several stations, so its own station
// comes first there.
func (l *Ledger) stationFor(ctx context.Context, tx *txn, q string, id any) (string, error) {
	own := ""
	if p := l.station.Load(); p != nil {
		own = *p
	}
	if l.d == postgresDialect && own != "" {
		return own, nil
	}
	var s string
	err := tx.QueryRowContext(ctx, q+` LIMIT 1`, id).Scan(&s)
	switch {
	case errors.Is(err, sql.ErrNoRows) || err == nil && s == "":
		return own, nil
	case err != nil:
		return "", err
	}
	return s, nil
}

func fmtTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func parseTime(s string) time.Time {
	t, err := time.Parse(timeFormat, s)
	if err != nil {
		t, _ = time.Parse(time.RFC3339Nano, s)
	}
	return t
}

func parseNullTime(s sql.NullString) time.Time {
	if !s.Valid {
		return time.Time{}
	}
	return parseTime(s.String)
}

// boolInt is a flag as both dialects store it (0 or 1).
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nullInt(v int64) sql.NullInt64 { return sql.NullInt64{Int64: v, Valid: v != 0} }
