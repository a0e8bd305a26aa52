package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/flashstation/flashstation/ledger"
)

// TestSetBatchOperator: a batch started without an operator is named
// once, with an operator event; a named batch is never renamed.
func TestSetBatchOperator(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l := be.open(t)
		named := seed(t, l) // operator "ana"
		b, err := l.StartBatch(ctx, ledger.Batch{LineID: "line1", Planned: 4})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.SetBatchOperator(ctx, b, "  "); err == nil {
			t.Error("an empty name was accepted")
		}
		if err := l.SetBatchOperator(ctx, b, " badge-0042 "); err != nil {
			t.Fatal(err)
		}
		if got, err := l.Batch(ctx, b); err != nil || got.Operator != "badge-0042" {
			t.Fatalf("batch %+v, %v", got, err)
		}
		if err := l.SetBatchOperator(ctx, b, "bob"); !errors.Is(err, ledger.ErrOperatorSet) {
			t.Errorf("renamed: %v", err)
		}
		if err := l.SetBatchOperator(ctx, named, "bob"); !errors.Is(err, ledger.ErrOperatorSet) {
			t.Errorf("renamed a batch started with an operator: %v", err)
		}
		if got, _ := l.Batch(ctx, named); got.Operator != "ana" {
			t.Errorf("operator %q, want ana", got.Operator)
		}
		if err := l.SetBatchOperator(ctx, 999, "bob"); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("unknown batch: %v", err)
		}
		evs, err := l.StationEvents(ctx, ledger.EventOperator, 10)
		if err != nil || len(evs) != 1 {
			t.Fatalf("operator events %+v, %v", evs, err)
		}
		var data map[string]string
		if e := evs[0]; e.BatchID != b || e.Stage != "named" || json.Unmarshal(e.Data, &data) != nil || data["operator"] != "badge-0042" {
			t.Errorf("event %+v (data %v)", e, data)
		}
	})
}
