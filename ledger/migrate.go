package ledger

import (
	"context"
	"database/sql"
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
}

var migrations = loadMigrations()

// loadMigrations reads migrations/NNNN_name.sql, which must be numbered
// 1, 2, 3... without gaps.
func loadMigrations() []migration {
	entries, err := fs.ReadDir(migrationFS, "migrations")
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
		b, err := migrationFS.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			panic(err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
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

func schemaVersion(ctx context.Context, q querier) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("ledger: read schema version: %w", err)
	}
	return v, nil
}

// migrate brings the database to version target, one transaction per
// step, each step recording its version (PRAGMA user_version) in the same
// transaction: a crash mid-migration leaves the previous version intact.
func migrate(ctx context.Context, db *sql.DB, target int) error {
	cur, err := schemaVersion(ctx, db)
	if err != nil {
		return err
	}
	if cur > len(migrations) {
		return fmt.Errorf("ledger schema version %d is newer than this flashstation understands (%d): use a newer flashstation", cur, len(migrations))
	}
	for _, m := range migrations[cur:target] {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("ledger: migrate to version %d: %w", m.version, err)
		}
		// Another process may have migrated while we waited for the lock.
		v, err := schemaVersion(ctx, tx)
		if err != nil {
			tx.Rollback()
			return err
		}
		if v >= m.version {
			tx.Rollback()
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("ledger: migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
			tx.Rollback()
			return fmt.Errorf("ledger: migration %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("ledger: migration %s: %w", m.name, err)
		}
	}
	return nil
}
