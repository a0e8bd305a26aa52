package ledger

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

//go:embed migrations/postgres/*.sql
var pgMigrationFS embed.FS

// pgMigrations are the factory ledger's schema steps; version N is
// pgMigrations[N-1].
var pgMigrations = loadMigrations(pgMigrationFS, "migrations/postgres", nil)

// FactorySchemaVersion is the factory ledger's schema version this build
// writes.
func FactorySchemaVersion() int { return len(pgMigrations) }

// IsFactoryURL reports whether s names a factory ledger (a PostgreSQL
// URL) rather than a ledger file.
func IsFactoryURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// RedactURL is a factory ledger URL fit for a log or an error: without
// its password, nor any parameter that names one (password,
// sslpassword). What is not a postgres:// URL is never shown.
func RedactURL(s string) string {
	if !IsFactoryURL(s) {
		return fmt.Sprintf("(not a postgres:// URL, %d characters)", len(s))
	}
	u, err := url.Parse(s)
	if err != nil {
		return "(a postgres:// URL that does not parse)"
	}
	q := u.Query()
	changed := false
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// URLHasPassword reports whether a factory ledger URL carries a password
// (in its user part or as a parameter).
func URLHasPassword(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	if _, ok := u.User.Password(); ok {
		return true
	}
	for k := range u.Query() {
		if strings.Contains(strings.ToLower(k), "password") {
			return true
		}
	}
	return false
}

// pgLock is the advisory lock key that makes migrations of one factory
// ledger run one at a time (benches start together).
const pgLock = 0x666c617368 // "flash"

// OpenFactory opens (creating its tables if needed) the factory ledger at
// a PostgreSQL URL and brings its schema to the current version. The URL
// may carry a password: it never appears in an error.
func OpenFactory(ctx context.Context, dsn string, opts ...Option) (*Ledger, error) {
	l, err := openPG(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	if err := migratePG(ctx, l.w); err != nil {
		l.Close()
		return nil, fmt.Errorf("factory ledger %s: %w", RedactURL(dsn), err)
	}
	return l, nil
}

// OpenFactoryReadOnly opens a factory ledger for reading only (status,
// logs, export, supervise): it migrates nothing, and its sessions are
// read-only. Its schema must be the current one.
func OpenFactoryReadOnly(ctx context.Context, dsn string, opts ...Option) (*Ledger, error) {
	l, err := openPG(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	v, err := schemaVersion(ctx, l.r, postgresDialect)
	if err == nil && v != len(pgMigrations) {
		err = fmt.Errorf("it has schema version %d, this flashstation reads version %d: start a bench of this version on it (it migrates), or use the flashstation that wrote it", v, len(pgMigrations))
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("factory ledger %s: %w", RedactURL(dsn), err)
	}
	l.w = nil
	return l, nil
}

func openPG(ctx context.Context, dsn string, opts []Option) (*Ledger, error) {
	if !IsFactoryURL(dsn) {
		return nil, fmt.Errorf("factory ledger: %s is not a postgres:// URL", RedactURL(dsn))
	}
	l := &Ledger{path: RedactURL(dsn), d: postgresDialect, now: time.Now, busy: busyTimeout}
	for _, o := range opts {
		o(l)
	}
	raw, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("factory ledger %s: %w", RedactURL(dsn), err)
	}
	raw.SetMaxOpenConns(8)
	raw.SetMaxIdleConns(4)
	raw.SetConnMaxIdleTime(time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := raw.PingContext(pctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("factory ledger %s: %w", RedactURL(dsn), ErrOffline{err})
	}
	l.w = &db{DB: raw, d: postgresDialect}
	l.r = l.w
	return l, nil
}

// ErrOffline wraps the error of a factory ledger that cannot be reached.
type ErrOffline struct{ Err error }

func (e ErrOffline) Error() string { return "cannot reach it: " + e.Err.Error() }
func (e ErrOffline) Unwrap() error { return e.Err }

// migratePG brings the factory ledger to the current version, one
// transaction per step under an advisory lock, so benches that start
// together migrate it once.
func migratePG(ctx context.Context, w *db) error { return migratePGTo(ctx, w, len(pgMigrations)) }

// migratePGTo brings the factory ledger to version target (tests of
// upgrades from earlier versions).
func migratePGTo(ctx context.Context, w *db, target int) error {
	// The version's table, made under the lock (two benches making it at
	// once would collide in PostgreSQL's catalog).
	if err := inTx(ctx, w, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(pgLock)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS ledger_schema (
			id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)`)
		return err
	}); err != nil {
		return fmt.Errorf("ledger: schema table: %w", err)
	}
	for _, m := range pgMigrations[:target] {
		err := inTx(ctx, w, func(tx *txn) error {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(pgLock)); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_schema(id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`); err != nil {
				return err
			}
			var v int
			if err := tx.QueryRowContext(ctx, `SELECT version FROM ledger_schema WHERE id = 1`).Scan(&v); err != nil {
				return err
			}
			if v > len(pgMigrations) {
				return fmt.Errorf("schema version %d is newer than this flashstation understands (%d): use a newer flashstation", v, len(pgMigrations))
			}
			if v >= m.version {
				return nil
			}
			if _, err := tx.Tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			_, err := tx.ExecContext(ctx, `UPDATE ledger_schema SET version = ? WHERE id = 1`, m.version)
			return err
		})
		if err != nil {
			return fmt.Errorf("ledger: migrate: %w", err)
		}
	}
	return nil
}

// FactoryID is the factory ledger's own id (made with its tables): a bench
// that meets another one sends it everything again.
func (l *Ledger) FactoryID(ctx context.Context) (string, error) {
	if l.d != postgresDialect {
		return "", errors.New("ledger: a bench ledger has no factory id")
	}
	var id string
	if err := l.r.QueryRowContext(ctx, `SELECT factory_id FROM ledger_meta WHERE id = 1`).Scan(&id); err != nil {
		return "", fmt.Errorf("ledger: factory id: %w", err)
	}
	return id, nil
}

// Factory reports whether the ledger is a factory ledger (PostgreSQL).
func (l *Ledger) Factory() bool { return l.d == postgresDialect }
