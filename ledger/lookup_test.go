package ledger_test

import (
	"context"
	"slices"
	"testing"
)

func TestBatchIDs(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		for _, tc := range []struct {
			name    string
			batches int
			want    []int64
		}{
			{"empty ledger", 0, nil},
			{"one batch", 1, []int64{1}},
			{"three batches", 3, []int64{1, 2, 3}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				l := be.open(t)
				for i := 0; i < tc.batches; i++ {
					seed(t, l)
				}
				got, err := l.BatchIDs(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("BatchIDs = %v, want %v", got, tc.want)
				}
			})
		}
	})
}
