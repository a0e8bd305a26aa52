package metrics_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/metrics"
	"github.com/flashstation/flashstation/sim"
)

// TestStation runs a batch on a simulated bench of four boards (line1's
// A2 has a bad block) with the metrics served on 127.0.0.1, and checks
// the scraped figures against the ledger and the pipeline.
func TestStation(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end on a simulated bench")
	}
	ctx := context.Background()
	bench, err := sim.NewBench(ctx, sim.BenchConfig{Dir: t.TempDir(), Boards: 4, Speed: 100, FastKeys: true, ImageSize: 16 << 20,
		FaultsOf: func(i int) sim.Faults {
			if i == 2 { // A2
				return sim.Faults{WriteErrorAt: 3 << 20}
			}
			return sim.Faults{}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bench.Close)
	st, problems, err := lines.LoadValid(bench.ConfigPath)
	if err != nil {
		t.Fatalf("%v %v", err, problems)
	}
	st.Metrics.Listen = "127.0.0.1:0"
	led, err := ledger.Open(ctx, filepath.Join(st.DataDir, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	led.EnsureStation(ctx, ledger.Station{ID: st.ID})
	for _, l := range st.Lines {
		led.EnsureLine(ctx, ledger.Line{ID: l.ID, StationID: st.ID})
	}
	p, err := lines.NewPipeline(ctx, st, lines.Options{Hardware: bench, Ledger: led, Logger: zerolog.Nop(),
		BatchSize: 2, AllowNonUSB: true, RegisterTimeout: 30 * time.Second, PollEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			p.Close()
		}
	})
	ms, err := metrics.Start(st, p, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s/metrics", ms.Addr())

	runCtx, cancel := context.WithTimeout(ctx, 3*time.Minute) // a ceiling: a hang fails
	defer cancel()
	ran := make(chan struct{})
	go func() { p.Run(runCtx); close(ran) }()
	select {
	case <-p.Done():
	case <-runCtx.Done():
		t.Fatalf("batch not done: %+v", p.Slots())
	}
	// Served while the station runs.
	if fs := scrape(t, url); fs[metrics.NameStationInfo] == nil {
		t.Errorf("no %s while running", metrics.NameStationInfo)
	}
	cancel()
	<-ran
	p.Close() // ends the stream: the metrics have counted every event once drained
	closed = true
	<-ms.Drained()
	fs := scrape(t, url)

	units, err := led.Units(ctx, ledger.UnitFilter{})
	if err != nil || len(units) != 4 {
		t.Fatalf("%d units in the ledger (%v), want 4", len(units), err)
	}
	var wants []want
	count := map[string]float64{}
	written := map[string]float64{}
	passes := map[string]float64{}
	for _, u := range units {
		count[fmt.Sprintf("line=%s,reason=%s,verdict=%s", u.LineID, u.Reason, u.State)]++
		written[u.LineID] += float64(u.WrittenBytes)
		if u.State == ledger.UnitPass {
			passes[u.LineID]++
		}
	}
	if count["line=line1,reason="+flash.ReasonWriteError+",verdict=fail"] != 1 || passes["line1"] != 1 || passes["line2"] != 2 {
		t.Fatalf("the bench did not end as planned: %v", count)
	}
	for lbls, n := range count {
		wants = append(wants, want{metrics.NameUnits, lbls, n})
	}
	for line, n := range written {
		if n <= 0 {
			t.Errorf("line %s wrote %g bytes", line, n)
		}
		wants = append(wants, want{metrics.NameFlashWritten, "line=" + line, n})
		wants = append(wants, want{metrics.NameRegistration + "_count", "line=" + line, passes[line]})
		wants = append(wants, want{metrics.NameBootToSerial + "_count", "line=" + line, passes[line]})
	}
	byState := map[string]float64{}
	for _, v := range p.Slots() {
		byState["line="+v.Line+",state="+v.State]++
	}
	for _, l := range st.Lines {
		for _, s := range metrics.SlotStates {
			lbls := "line=" + l.ID + ",state=" + s
			wants = append(wants, want{metrics.NameSlots, lbls, byState[lbls]})
		}
	}
	checked := 0
	for _, h := range p.Health() {
		if h.VaultChecked.IsZero() {
			continue
		}
		up := 0.0
		if h.VaultOK {
			up = 1
		}
		wants = append(wants, want{metrics.NameVaultUp, "line=" + h.Line, up})
		wants = append(wants, want{metrics.NameVaultProbe, "line=" + h.Line, h.VaultLatency.Seconds()})
		if h.VaultLatency <= 0 {
			t.Errorf("line %s: the vault's check took %s", h.Line, h.VaultLatency)
		}
		checked++
	}
	if checked == 0 {
		t.Error("no vault was checked while the batch ran")
	}
	wants = append(wants, want{metrics.NameStationInfo, "station_id=" + st.ID, 1})
	fs.check(t, wants)
	// Registrations took time, boots with them more; two flashes on each line had a throughput.
	for _, line := range []string{"line1", "line2"} {
		reg, _ := fs.value(metrics.NameRegistration+"_sum", "line="+line)
		boot, _ := fs.value(metrics.NameBootToSerial+"_sum", "line="+line)
		if reg <= 0 || boot <= reg {
			t.Errorf("%s: registration took %gs, boot to serial %gs: want both, the boot's longer", line, reg, boot)
		}
		if n, _ := fs.value(metrics.NameFlashThroughput+"_count", "line="+line); n != 2 {
			t.Errorf("%g flash throughputs on %s, want 2", n, line)
		}
	}

	addr := ms.Addr().String()
	if err := ms.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("%s still listens after Close", addr)
	}
}
