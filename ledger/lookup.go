package ledger

import (
	"context"
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
