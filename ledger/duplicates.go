package ledger

import (
	"context"
	"fmt"
	"time"
)

// FactoryFlag is one of a bench's serial assertions whose serial or
// device key another bench recorded too, as the factory ledger told it.
type FactoryFlag struct {
	Kind         string    `json:"kind"` // "serial" or "device-key"
	Value        string    `json:"value"`
	Serial       string    `json:"serial"`
	OtherStation string    `json:"other_station"`
	OtherUID     string    `json:"other_uid"`
	FoundAt      time.Time `json:"found_at"`
}

// FactoryFlags returns what the factory ledger flagged, oldest first.
func (l *Ledger) FactoryFlags(ctx context.Context) ([]FactoryFlag, error) {
	if l.d != sqliteDialect {
		return nil, nil
	}
	rows, err := l.r.QueryContext(ctx, `SELECT kind, value, serial, other_station, other_uid, found_at FROM factory_flags ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("ledger: factory flags: %w", err)
	}
	defer rows.Close()
	var out []FactoryFlag
	for rows.Next() {
		var f FactoryFlag
		var at string
		if err := rows.Scan(&f.Kind, &f.Value, &f.Serial, &f.OtherStation, &f.OtherUID, &at); err != nil {
			return nil, err
		}
		f.FoundAt = parseTime(at)
		out = append(out, f)
	}
	return out, rows.Err()
}

// factoryFlagCount is how many flags the factory ledger gave the bench.
func (l *Ledger) factoryFlagCount(ctx context.Context) (int, error) {
	var n int
	if err := l.r.QueryRowContext(ctx, `SELECT count(*) FROM factory_flags`).Scan(&n); err != nil {
		return 0, fmt.Errorf("ledger: factory flags: %w", err)
	}
	return n, nil
}

// FactoryDuplicate is a serial or device key that several benches
// recorded, in a factory ledger.
type FactoryDuplicate struct {
	Kind     string   `json:"kind"` // "serial" (brand/model/serial) or "device-key"
	Value    string   `json:"value"`
	Stations []string `json:"stations"`
}

// FactoryDuplicates lists, in a factory ledger, the serials and device
// keys that more than one bench recorded, among the assertions received
// in [since, until) (zero: unbounded) on line (empty: every line).
func (l *Ledger) FactoryDuplicates(ctx context.Context, line string, since, until time.Time) ([]FactoryDuplicate, error) {
	if l.d != postgresDialect {
		return nil, nil
	}
	cond, args := `1 = 1`, []any{}
	if line != "" {
		cond += ` AND line_id = ?`
		args = append(args, line)
	}
	if !since.IsZero() {
		cond += ` AND received_at >= ?`
		args = append(args, fmtTime(since))
	}
	if !until.IsZero() {
		cond += ` AND received_at < ?`
		args = append(args, fmtTime(until))
	}
	// The values of the window's duplicates, with every bench that has
	// them (inside the window or not).
	q := `SELECT kind, value, string_agg(DISTINCT station_id, ',' ORDER BY station_id) FROM cross_bench_duplicates
		WHERE (kind, value) IN (SELECT kind, value FROM cross_bench_duplicates WHERE ` + cond + `)
		GROUP BY kind, value ORDER BY kind, value`
	rows, err := l.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: factory duplicates: %w", err)
	}
	defer rows.Close()
	out := []FactoryDuplicate{}
	for rows.Next() {
		var d FactoryDuplicate
		var st string
		if err := rows.Scan(&d.Kind, &d.Value, &st); err != nil {
			return nil, err
		}
		d.Stations = splitComma(st)
		out = append(out, d)
	}
	return out, rows.Err()
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// dupOverlap is how far back each check looks again: ids are given at
// insert and seen at commit, so a lower id can appear after a higher one.
const dupOverlap = 10000

// checkDuplicates asks the factory ledger which of this bench's serials
// and device keys another bench recorded, among the rows that arrived
// since the last check (all of them, the first time), and records them
// in the bench's ledger.
func (f *Forwarder) checkDuplicates(ctx context.Context, fac *Ledger) error {
	f.mu.Lock()
	seen := f.dupMark
	f.mu.Unlock()
	mark := max(seen-dupOverlap, 0)
	var top int64
	if err := fac.r.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM cross_bench_duplicates`).Scan(&top); err != nil {
		return fmt.Errorf("ledger: factory duplicates: %w", err)
	}
	if top <= seen {
		return nil
	}
	// This bench's rows among the duplicates found since the last look,
	// each with the other benches' records of the same value: this
	// bench's new rows, then the others' new rows (each an id range),
	// a bounded number at a time.
	rows, err := fac.r.QueryContext(ctx, `
		(SELECT m.kind, m.value, m.serial, o.station_id, o.uid
		FROM cross_bench_duplicates m JOIN cross_bench_duplicates o ON o.kind = m.kind AND o.value = m.value AND o.station_id != m.station_id
		WHERE m.station_id = ?1 AND m.id > ?2 LIMIT 10000)
		UNION
		(SELECT m.kind, m.value, m.serial, o.station_id, o.uid
		FROM cross_bench_duplicates o JOIN cross_bench_duplicates m ON m.kind = o.kind AND m.value = o.value AND m.station_id = ?1
		WHERE o.id > ?2 AND o.station_id != ?1 LIMIT 10000)`, f.station, mark)
	if err != nil {
		return fmt.Errorf("ledger: factory duplicates: %w", err)
	}
	var found []FactoryFlag
	for rows.Next() {
		var fl FactoryFlag
		if err := rows.Scan(&fl.Kind, &fl.Value, &fl.Serial, &fl.OtherStation, &fl.OtherUID); err != nil {
			rows.Close()
			return fmt.Errorf("ledger: factory duplicates: %w", err)
		}
		found = append(found, fl)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("ledger: factory duplicates: %w", err)
	}
	if len(found) > 0 {
		now := f.bench.stamp(time.Time{})
		err := f.bench.write(ctx, func(tx *txn) error {
			for _, fl := range found {
				if _, err := tx.ExecContext(ctx, `INSERT INTO factory_flags(kind, value, serial, other_station, other_uid, found_at)
					VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, other_uid) DO NOTHING`,
					fl.Kind, fl.Value, fl.Serial, fl.OtherStation, fl.OtherUID, now); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("ledger: factory duplicates: %w", err)
		}
	}
	n, err := f.bench.factoryFlagCount(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.dupMark = top
	f.mu.Unlock()
	f.update(func(s *ForwardStatus) { s.Duplicates = n })
	return nil
}
