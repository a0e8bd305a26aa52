package ledger

import (
	"context"
	"database/sql"
)

// MigrateTo brings a raw database file to schema version v (tests of
// upgrades from earlier versions).
func MigrateTo(ctx context.Context, path string, v int) error {
	raw, err := sql.Open("sqlite", dsn(path, false, busyTimeout))
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetMaxOpenConns(1)
	return migrate(ctx, &db{DB: raw}, v)
}

// RawDB opens a plain connection to a ledger file.
func RawDB(path string) (*sql.DB, error) { return sql.Open("sqlite", dsn(path, false, busyTimeout)) }
