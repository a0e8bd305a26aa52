package ledger

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one schema step; version N is migrations[N-1].
type migration struct {
	version int
	name    string
	sql     string
	// post runs after sql in the same transaction: what SQL alone cannot
	// do (computing the serial assertions' hash chain).
	post func(ctx context.Context, tx *txn) error
}

// postSteps are the Go parts of migrations, by version.
var postSteps = map[int]func(ctx context.Context, tx *txn) error{
	3: chainExisting,
	5: sealExisting,
}

var migrations = loadMigrations(migrationFS, "migrations", postSteps)

// loadMigrations reads dir/NNNN_name.sql, which must be numbered 1, 2,
// 3... without gaps.
func loadMigrations(fsys fs.FS, dir string, post map[int]func(ctx context.Context, tx *txn) error) []migration {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		panic(err)
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			panic("ledger: migration file without a number: " + e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			panic(err)
		}
		name := strings.TrimPrefix(path.Join(dir, e.Name()), "migrations/")
		ms = append(ms, migration{version: v, name: name, sql: string(b), post: post[v]})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			panic(fmt.Sprintf("ledger: migration %s is out of sequence (want version %d)", m.name, i+1))
		}
	}
	return ms
}

// SchemaVersion is the schema version this build writes.
func SchemaVersion() int { return len(migrations) }

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func schemaVersion(ctx context.Context, q querier, d dialect) (int, error) {
	var v int
	query := "PRAGMA user_version"
	if d == postgresDialect {
		query = "SELECT coalesce((SELECT version FROM ledger_schema WHERE id = 1), 0)"
	}
	if err := q.QueryRowContext(ctx, query).Scan(&v); err != nil {
		return 0, fmt.Errorf("ledger: read schema version: %w", err)
	}
	return v, nil
}

// migrate brings the database to version target, one transaction per
// step, each step recording its version (PRAGMA user_version) in the same
// transaction: a crash mid-migration leaves the previous version intact.
func migrate(ctx context.Context, db *db, target int) error {
	cur, err := schemaVersion(ctx, db, sqliteDialect)
	if err != nil {
		return err
	}
	if cur > len(migrations) {
		return fmt.Errorf("ledger schema version %d is newer than this flashstation understands (%d): use a newer flashstation", cur, len(migrations))
	}
	for _, m := range migrations[cur:target] {
		if err := m.apply(ctx, db); err != nil {
			return err
		}
	}
	return nil
}

// fkOff marks a migration that rebuilds a table others refer to: it runs
// with foreign keys off (SQLite's procedure for changing a table's
// constraints) and checks every reference before it commits.
const fkOff = "-- foreign-keys: off"

// apply runs one step in a transaction on one connection.
func (m migration) apply(ctx context.Context, db *db) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("ledger: migrate to version %d: %w", m.version, err)
	}
	defer conn.Close()
	rebuild := strings.HasPrefix(m.sql, fkOff)
	if rebuild {
		// Outside a transaction: SQLite ignores it inside one.
		if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
			return fmt.Errorf("ledger: migration %s: %w", m.name, err)
		}
		defer func() {
			if _, ferr := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = ON"); ferr != nil {
				// Never back in the pool without its foreign keys.
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
				if err == nil {
					err = fmt.Errorf("ledger: migration %s: foreign keys back on: %w", m.name, ferr)
				}
			}
		}()
	}
	return inTx(ctx, conn, func(tx *txn) error {
		// Another process may have migrated while we waited for the lock.
		v, err := schemaVersion(ctx, tx, sqliteDialect)
		if err != nil || v >= m.version {
			return err
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("ledger: migration %s: %w", m.name, err)
		}
		if m.post != nil {
			if err := m.post(ctx, tx); err != nil {
				return fmt.Errorf("ledger: migration %s: %w", m.name, err)
			}
		}
		if rebuild {
			rows, err := tx.QueryContext(ctx, "PRAGMA foreign_key_check")
			if err != nil {
				return fmt.Errorf("ledger: migration %s: %w", m.name, err)
			}
			broken := rows.Next()
			rerr := rows.Err()
			rows.Close()
			if rerr != nil {
				return fmt.Errorf("ledger: migration %s: %w", m.name, rerr)
			}
			if broken {
				return fmt.Errorf("ledger: migration %s would break a reference between records: not applied", m.name)
			}
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
			return fmt.Errorf("ledger: migration %s: %w", m.name, err)
		}
		return nil
	})
}
