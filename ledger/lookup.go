package ledger

import (
	"context"
	"encoding/json"
	"fmt"
)

// BatchIDs returns the id of every recorded batch, in ascending order: what
// a lookup of an unknown batch can offer instead.
func (l *Ledger) BatchIDs(ctx context.Context) ([]int64, error) {
	rows, err := l.r.QueryContext(ctx, `SELECT id FROM batches ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("ledger: batch ids: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("ledger: batch ids: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// StationEvents returns the newest events of a kind that belong to no
// unit (the station's own, e.g. its reconciliations with the vaults),
// newest first, at most limit.
func (l *Ledger) StationEvents(ctx context.Context, kind string, limit int) ([]Event, error) {
	rows, err := l.r.QueryContext(ctx, `SELECT id, at, coalesce(batch_id, 0), slot_id, kind, stage, message, data
		FROM events WHERE unit_id IS NULL AND kind = ? ORDER BY id DESC LIMIT ?`, kind, limit)
	if err != nil {
		return nil, fmt.Errorf("ledger: station events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at, data string
		if err := rows.Scan(&e.ID, &at, &e.BatchID, &e.SlotID, &e.Kind, &e.Stage, &e.Message, &data); err != nil {
			return nil, err
		}
		e.At, e.Data = parseTime(at), json.RawMessage(data)
		out = append(out, e)
	}
	return out, rows.Err()
}
