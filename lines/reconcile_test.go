package lines_test

import (
	"testing"
	"time"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/serialvault"
)

func TestReconcile(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := &lines.Line{ID: "line1", Registration: lines.Registration{ExpectedSerial: "{hw}"}}
	row := func(id int, serial, key string, rev int, at time.Duration) serialvault.LogEntry {
		return serialvault.LogEntry{ID: id, Make: "acme", Model: "m", SerialNumber: serial, Fingerprint: key, Revision: rev, Created: t0.Add(at)}
	}
	rec := func(id int64, serial, key string, rev int, at time.Duration) ledger.SerialAssertion {
		return ledger.SerialAssertion{ID: id, LineID: "line1", Serial: serial, DeviceKeyID: key, Revision: rev, Via: ledger.ViaProxy, ReceivedAt: t0.Add(at)}
	}
	units := []ledger.Unit{{LineID: "line1", HWSerial: "S-4", SlotID: "A1"}}
	for _, tc := range []struct {
		name  string
		logs  []serialvault.LogEntry
		recs  []ledger.SerialAssertion
		kinds []string
	}{
		{"agree", []serialvault.LogEntry{row(2, "S-2", "K2", 1, time.Second), row(1, "S-1", "K1", 1, 0)},
			[]ledger.SerialAssertion{rec(1, "S-1", "K1", 1, 0), rec(2, "S-2", "K2", 1, time.Second)}, nil},
		{"signed, lost by the station", []serialvault.LogEntry{row(3, "S-1", "K1", 2, time.Minute), row(1, "S-1", "K1", 1, 0)},
			[]ledger.SerialAssertion{rec(1, "S-1", "K1", 1, 0)}, []string{lines.DiffNotInLedger}},
		{"an expected board's serial signed elsewhere", []serialvault.LogEntry{row(5, "S-4", "KX", 1, 0)}, nil, []string{lines.DiffNotInLedger}},
		{"another bench's board is none of ours", []serialvault.LogEntry{row(6, "OTHER-1", "KO", 1, 0)}, nil, nil},
		{"recorded, never signed", nil, []ledger.SerialAssertion{rec(9, "S-9", "K9", 1, 0)}, []string{lines.DiffNotInVault}},
		{"another model", []serialvault.LogEntry{{ID: 7, Make: "acme", Model: "other", SerialNumber: "S-4", Fingerprint: "K1", Revision: 1, Created: t0}}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := lines.Reconcile(l, "bench", "acme", "m", tc.logs, tc.recs, units, time.Time{})
			if len(r.Differences) != len(tc.kinds) {
				t.Fatalf("differences %+v, want %v", r.Differences, tc.kinds)
			}
			for i, k := range tc.kinds {
				if r.Differences[i].Kind != k {
					t.Errorf("difference %d: %+v, want %s", i, r.Differences[i], k)
				}
			}
			if r.OK() != (len(tc.kinds) == 0) {
				t.Error("OK disagrees")
			}
		})
	}
	// A full window: what is older than its oldest row is not provable.
	logs := make([]serialvault.LogEntry, serialvault.SigningLogWindow)
	for i := range logs {
		logs[i] = row(100000-i, "W", "KW", i+1, time.Hour)
	}
	r := lines.Reconcile(l, "bench", "acme", "m", logs, []ledger.SerialAssertion{rec(1, "OLD-1", "KO", 1, 0)}, nil, time.Time{})
	if !r.Truncated || r.NotProvable != 1 || !r.OK() {
		t.Errorf("window: truncated %v, not provable %d, %+v", r.Truncated, r.NotProvable, r.Differences)
	}
}
