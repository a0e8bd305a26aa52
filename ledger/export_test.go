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

// ChainLink is the link of a serial assertion at place seq of its chain
// after the link prev (the benchmarks' generated factory ledgers chain
// their rows as a bench does); textSHA256 is the hex SHA-256 of its text.
func ChainLink(prev string, seq int64, textSHA256 string, a SerialAssertion, receivedAt string) string {
	return chainLink(prev, chainRow{id: seq, textSHA256: textSHA256, brand: a.BrandID, model: a.Model, serial: a.Serial,
		revision: int64(a.Revision), deviceKeyID: a.DeviceKeyID, lineID: a.LineID, via: a.Via, duplicate: a.Duplicate,
		receivedAt: receivedAt})
}

// MigrateFactoryTo brings the factory ledger at url to schema version v
// (tests of upgrades from earlier versions).
func MigrateFactoryTo(ctx context.Context, url string, v int) error {
	raw, err := sql.Open("pgx", url)
	if err != nil {
		return err
	}
	defer raw.Close()
	return migratePGTo(ctx, &db{DB: raw, d: postgresDialect}, v)
}

// ImageSeal is the seal of a batch (chain.go).
func ImageSeal(b Batch) string { return imageSeal(sealOf(b)) }
