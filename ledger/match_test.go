package ledger_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/flashstation/flashstation/ledger"
)

// matchUnits records units to search: slot, board, serial, verdict and
// reason, finished in the order given by finish (seconds after t0).
func matchUnits(t *testing.T, be backend) (*ledger.Ledger, int64, []int64) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	now := t0
	l := be.open(t, ledger.WithClock(func() time.Time { return now }))
	batch := seed(t, l)
	units := []struct {
		slot, hw, serial, state, reason string
		finish                          int // seconds after t0; 0: running
	}{
		{"A1", "SIM00005", "ACME-1001", ledger.UnitPass, "", 30},
		{"A2", "SIM00012", "", ledger.UnitFail, "write-error", 10},
		{"B10", "hw-50%x", "ACME-1002", ledger.UnitPass, "", 20},
		{"B2", "SIM_7", "", ledger.UnitFail, "boot-timeout", 40},
		{"C1", "SIM00099", "", "", "", 0},
	}
	var ids []int64
	for _, u := range units {
		now = t0
		id, err := l.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: u.slot, HWSerial: u.hw, StartedAt: t0})
		if err != nil {
			t.Fatal(err)
		}
		if u.serial != "" {
			if err := l.UpdateUnit(ctx, id, ledger.UnitProgress{Serial: u.serial}); err != nil {
				t.Fatal(err)
			}
		}
		if u.finish > 0 {
			now = t0.Add(time.Duration(u.finish) * time.Second)
			if err := l.FinishUnit(ctx, id, u.state, u.reason, ""); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, id)
	}
	return l, batch, ids
}

func TestUnitsMatch(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		l, batch, ids := matchUnits(t, be)
		a1, a2, b10, b2, c1 := ids[0], ids[1], ids[2], ids[3], ids[4]
		all := []int64{c1, b2, b10, a2, a1}
		tests := []struct {
			name string
			f    ledger.UnitFilter
			want []int64
		}{
			{"middle of a board serial", ledger.UnitFilter{Match: "00005"}, []int64{a1}},
			{"board serial, any case", ledger.UnitFilter{Match: "sim000"}, []int64{c1, a2, a1}},
			{"assigned serial", ledger.UnitFilter{Match: "acme-100"}, []int64{b10, a1}},
			{"assigned serial end", ledger.UnitFilter{Match: "1002"}, []int64{b10}},
			{"slot", ledger.UnitFilter{Match: "A2"}, []int64{a2}},
			{"slot lower case", ledger.UnitFilter{Match: "b1"}, []int64{b10}},
			{"reason code part", ledger.UnitFilter{Match: "write"}, []int64{a2}},
			{"reason code, upper case", ledger.UnitFilter{Match: "TIMEOUT"}, []int64{b2}},
			{"percent is not a wildcard", ledger.UnitFilter{Match: "50%"}, []int64{b10}},
			{"lone percent", ledger.UnitFilter{Match: "%"}, []int64{b10}},
			{"underscore is not a wildcard", ledger.UnitFilter{Match: "SIM_"}, []int64{b2}},
			{"nothing", ledger.UnitFilter{Match: "zzz"}, nil},
			{"a 1 anywhere", ledger.UnitFilter{Match: "1"}, all},
			{"batch id", ledger.UnitFilter{Match: "1", State: ledger.UnitFail}, []int64{b2, a2}}, // B2's 1 is its batch's
			{"bounded", ledger.UnitFilter{Match: "sim", Limit: 2}, []int64{c1, b2}},
			{"with another filter", ledger.UnitFilter{Match: "sim", State: ledger.UnitFail}, []int64{b2, a2}},
			{"prefix still a prefix", ledger.UnitFilter{SerialPrefix: "00005"}, nil},
			{"prefix of a board", ledger.UnitFilter{SerialPrefix: "SIM0001"}, []int64{a2}},
			{"prefix escapes _", ledger.UnitFilter{SerialPrefix: "SIM_"}, []int64{b2}},
			{"by finish, newest first, running last", ledger.UnitFilter{Batches: []int64{batch}, ByFinish: true}, []int64{b2, a1, b10, a2, c1}},
			{"by finish, bounded", ledger.UnitFilter{ByFinish: true, Limit: 2}, []int64{b2, a1}},
		}
		if batch != 1 {
			t.Fatalf("batch id %d: the batch id case expects 1", batch)
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				us, err := l.Units(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				var got []int64
				for _, u := range us {
					got = append(got, u.ID)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("Units(%+v) = %v, want %v", tc.f, got, tc.want)
				}
			})
		}
	})
}
