package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// EventOperator is the kind of the events that say who did what at the
// bench: the operator named for a batch, and each operator action (retry,
// disable, end batch), with the operator's name in the event's data.
const EventOperator = "operator"

// ErrOperatorSet says a batch already has an operator: it is never
// replaced.
var ErrOperatorSet = errors.New("the batch already has an operator")

// SetBatchOperator names the operator of a batch started without one (the
// bench asked for the name after the station started). It is refused
// (ErrOperatorSet) once the batch has an operator, and recorded with an
// operator event in the same transaction.
func (l *Ledger) SetBatchOperator(ctx context.Context, batchID int64, name string) error {
	name = strings.TrimSpace(name)
	if name == "" {
		return fmt.Errorf("ledger: set the operator of batch %d: an empty name", batchID)
	}
	data, err := json.Marshal(map[string]string{"operator": name, "action": "named"})
	if err != nil {
		return err
	}
	return l.write(ctx, func(tx *txn) error {
		var cur string
		err := tx.QueryRowContext(ctx, `SELECT operator FROM batches WHERE id = ?`, batchID).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("ledger: set the operator of batch %d: %w", batchID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("ledger: set the operator of batch %d: %w", batchID, err)
		}
		if cur != "" {
			return fmt.Errorf("ledger: set the operator of batch %d to %q: %w (%q)", batchID, name, ErrOperatorSet, cur)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE batches SET operator = ? WHERE id = ? AND operator = ''`, name, batchID); err != nil {
			return fmt.Errorf("ledger: set the operator of batch %d: %w", batchID, err)
		}
		station, err := l.stationFor(ctx, tx, `SELECT station_id FROM batches WHERE id = ?`, batchID)
		if err != nil {
			return fmt.Errorf("ledger: set the operator of batch %d: %w", batchID, err)
		}
		at := l.at(time.Time{})
		if _, err := tx.ExecContext(ctx, `INSERT INTO events(uid, station_id, at, batch_id, kind, stage, message, data) VALUES (?, ?, ?, ?, ?, 'named', ?, ?)`,
			NewUID(at), station, fmtTime(at), batchID, EventOperator, "operator "+name+" at the bench", string(data)); err != nil {
			return fmt.Errorf("ledger: set the operator of batch %d: %w", batchID, err)
		}
		return nil
	})
}
