package lines_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/ledger/spool"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
	"github.com/flashstation/flashstation/sim"
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
	// A board still in work: signed, not recorded yet, not a difference.
	running := []ledger.Unit{{LineID: "line1", HWSerial: "S-5", SlotID: "B1", State: ledger.UnitRunning}}
	if r := lines.Reconcile(l, "bench", "acme", "m", []serialvault.LogEntry{row(8, "S-5", "K5", 1, 0)}, nil, running, time.Time{}); !r.OK() || r.Pending != 1 {
		t.Errorf("in work: %+v", r)
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

// TestReconcileOnTheBench: after a batch through both capture methods the
// ledger and the vault's signing log agree; then a rogue device gets a
// serial of one of the line's boards straight from the vault: the
// station's periodic pass finds it and says so.
func TestReconcileOnTheBench(t *testing.T) {
	e := startBenchWith(t, sim.BenchConfig{Boards: 2, Speed: 100}, 1, benchOpt{reconcileEvery: 100 * time.Millisecond})
	w := watch(e.p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case <-e.p.Done():
	case <-time.After(3 * time.Minute):
		t.Fatalf("batch not done: %+v", e.p.Slots())
	}
	// Each line's next pass sees its one assertion signed and recorded.
	ceiling := time.Now().Add(time.Minute)
	for {
		ok := 0
		for _, h := range e.p.Health() {
			if r := h.Reconciled; r != nil && r.OK() && r.Matched == 1 && r.LedgerRows == 1 {
				ok++
			}
		}
		if ok == 2 {
			break
		}
		if time.Now().After(ceiling) {
			t.Fatalf("not reconciled: %+v / %+v", e.p.Health()[0].Reconciled, e.p.Health()[1].Reconciled)
		}
		time.Sleep(20 * time.Millisecond) // polls a state
	}
	data, _ := os.ReadFile(e.st.Lines[0].Model)
	model, _ := serialvault.Decode(data)
	rogue := &vaulttest.Device{Key: vaulttest.TestKey(5), Model: model, Serial: "SIM00001", URL: e.bench.VaultURL,
		Headers: map[string]string{"api-key": sim.APIKey}, MaxFailures: 1}
	if _, err := rogue.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev, _ := w.await(t, 0, "the disagreement", func(ev lines.Event) bool {
		return ev.Kind == lines.EventNotice && strings.Contains(ev.Text, "disagree")
	})
	if ev.Line != sim.LineUMS || !strings.Contains(ev.Text, "not-in-ledger SIM00001") {
		t.Errorf("notice %+v", ev)
		for _, l := range e.bench.Vault.SigningLog() {
			t.Logf("vault row %+v", l)
		}
		as, _ := e.led.SerialAssertions(context.Background(), ledger.AssertionFilter{})
		for _, a := range as {
			t.Logf("ledger %s %s %s %d", a.LineID, a.Serial, a.DeviceKeyID[:12], a.Revision)
		}
		t.Logf("line2 %+v", e.p.Health()[1].Reconciled)
	}
	r := e.p.Health()[0].Reconciled
	if r == nil || len(r.Differences) != 1 || r.Differences[0].DeviceKeyID != vaulttest.TestKey(5).Public().ID() {
		t.Errorf("line1 reconciled %+v", r)
	}
	// The ledger keeps it for status: the newest reconcile event of line1
	// is the disagreement.
	evs, err := e.led.StationEvents(context.Background(), lines.EventReconcile, 10)
	if err != nil || len(evs) == 0 || evs[0].Stage != sim.LineUMS || !strings.Contains(evs[0].Message, "disagree") {
		t.Errorf("recorded reconciliations %+v %v", evs, err)
	}
}

// TestSpoolReplayedAtStart: a station killed after the vault signed (the
// serial spooled) and before the ledger write leaves the serial in the
// spool; the next start records it before anything else, and the ledger
// then holds what the vault signed.
func TestSpoolReplayedAtStart(t *testing.T) {
	e := startBench(t, sim.BenchConfig{Boards: 2, Speed: 100}, 0)
	e.p.Close() // the first run is gone (killed)
	data, _ := os.ReadFile(e.st.Lines[0].Model)
	model, _ := serialvault.Decode(data)
	d := &vaulttest.Device{Key: vaulttest.TestKey(6), Model: model, Serial: "SIM00001", URL: e.bench.VaultURL,
		Headers: map[string]string{"api-key": sim.APIKey}, MaxFailures: 1}
	res, err := d.Register(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(lines.SpoolDir(e.st))
	if err != nil {
		t.Fatal(err)
	}
	s := res.Serial
	if _, err := sp.Put(spool.Entry{Assertion: ledger.SerialAssertion{Text: s.Encode(), BrandID: s.BrandID, Model: s.Model, Serial: s.Serial,
		Revision: s.Revision(), DeviceKeyID: s.DeviceKeyID, LineID: sim.LineUMS, Via: ledger.ViaProxy, ReceivedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	p, err := lines.NewPipeline(context.Background(), e.st, lines.Options{Hardware: e.bench, Ledger: e.led, Logger: zerolog.Nop(), AllowNonUSB: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	as, _ := e.led.SerialAssertions(context.Background(), ledger.AssertionFilter{})
	logs := e.bench.Vault.SigningLog()
	if len(as) != 1 || len(logs) != 1 || as[0].Serial != logs[0].SerialNumber || as[0].DeviceKeyID != logs[0].Fingerprint {
		t.Fatalf("ledger %+v, vault %+v", as, logs)
	}
	if left, _ := sp.Pending(); len(left) != 0 {
		t.Errorf("%d left in the spool", len(left))
	}
}

// TestVaultKeyProbe: a line whose api-key the vault refuses shows it from
// the start (a request-id probe beside the health check), not only when a
// board asks for its serial.
func TestVaultKeyProbe(t *testing.T) {
	e := startBenchWith(t, sim.BenchConfig{Boards: 2, Speed: 100}, 0, benchOpt{edit: func(st *lines.Station) {
		wrong := filepath.Join(t.TempDir(), "wrong.key")
		os.WriteFile(wrong, []byte("not-the-model-key\n"), 0o600)
		st.Lines[0].Vault.APIKey = lines.SecretRef{File: wrong}
	}})
	for _, s := range e.st.Slots {
		e.p.SetDisabled(s.ID, true)
	}
	w := watch(e.p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	ev, _ := w.await(t, 0, "the refused key", func(ev lines.Event) bool {
		return ev.Kind == lines.EventNotice && strings.Contains(ev.Text, "refuses the line's api-key")
	})
	if ev.Line != sim.LineUMS {
		t.Errorf("notice %+v", ev)
	}
	hs := e.p.Health()
	if !hs[0].VaultKeyRefused || hs[0].VaultOK || hs[1].VaultKeyRefused {
		t.Errorf("health %+v / %+v", hs[0], hs[1])
	}
}
