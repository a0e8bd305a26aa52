package lines_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/ledger/pgtest"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/sim"
)

// TestFactoryLedgerConfig: station.ledger.url is a secret reference (the
// URL may hold a password), never the URL itself.
func TestFactoryLedgerConfig(t *testing.T) {
	base, err := os.ReadFile("testdata/config/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const after = "  data-dir: /tmp/flashstation-min\n"
	name := filepath.Join("testdata", "config", "ledger.yaml")
	t.Setenv("FLASHSTATION_TEST_LEDGER", "postgres://bench@db/flashstation")
	for _, tc := range []struct {
		name, ledger, env, err string
	}{
		{name: "absent"},
		{name: "env", ledger: "  ledger: {url: {env: FLASHSTATION_TEST_LEDGER}}\n", env: "FLASHSTATION_TEST_LEDGER"},
		{name: "the URL written in the file", ledger: "  ledger: {url: \"postgres://u:pw@db/f\"}\n",
			err: name + ":5:17: station.ledger.url: secrets are not written in the configuration"},
		{name: "no url", ledger: "  ledger: {}\n", err: name + ":5:11: station.ledger.url: give the factory ledger's PostgreSQL URL"},
		{name: "bad variable name", ledger: "  ledger: {url: {env: \"not a name\"}}\n", err: name + ":5:23: station.ledger.url.env: \"not a name\" is not an environment variable name"},
		{name: "unknown key", ledger: "  ledger: {url: {env: X}, dsn: y}\n", err: name + ":5:27: station.ledger.dsn: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := strings.Replace(string(base), after, after+tc.ledger, 1)
			st, problems := lines.Parse(name, []byte(data))
			errs := problems.Errors()
			if tc.err == "" {
				if len(errs) > 0 {
					t.Fatalf("problems: %v", errs)
				}
				if st.Ledger.URL.Env != tc.env || st.Ledger.IsSet() != (tc.env != "") {
					t.Errorf("ledger = %+v", st.Ledger)
				}
				return
			}
			if len(errs) != 1 || !strings.HasPrefix(errs[0].String(), tc.err) {
				t.Errorf("errors %v, want one starting %q", errs, tc.err)
			}
			for _, e := range errs {
				if strings.Contains(e.String(), "pw@") {
					t.Errorf("the error shows the secret: %s", e)
				}
			}
		})
	}
}

// TestPipelineForwardsToTheFactory: a station whose file names a factory
// ledger forwards its batch there, says on its event stream that it
// reached it, and its last records (the closed batches) go before Run
// returns.
func TestPipelineForwardsToTheFactory(t *testing.T) {
	c := pgtest.Start(t)
	urlFile := filepath.Join(t.TempDir(), "factory.url")
	if err := os.WriteFile(urlFile, []byte(c.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startBenchWith(t, sim.BenchConfig{Boards: 2}, 1, benchOpt{edit: func(st *lines.Station) {
		st.Ledger.URL = lines.SecretRef{File: urlFile}
	}})
	if _, ok := e.p.Factory(); !ok {
		t.Fatal("no forwarder for a station with a factory ledger")
	}
	evs := e.runUntilDone(t, 3*time.Minute)
	connected := false
	for _, ev := range evs {
		connected = connected || ev.Kind == lines.EventNotice && strings.HasPrefix(ev.Text, "factory ledger connected")
	}
	if !connected {
		t.Error("no notice that the factory ledger was reached")
	}
	if n, err := e.led.Backlog(context.Background()); err != nil || n != 0 {
		t.Errorf("backlog after Run: %d %v", n, err)
	}
	fac, err := ledger.OpenFactoryReadOnly(context.Background(), c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer fac.Close()
	ctx := context.Background()
	local, _ := e.led.Units(ctx, ledger.UnitFilter{})
	there, _ := fac.Units(ctx, ledger.UnitFilter{StationID: e.st.ID})
	if len(local) != 2 || len(there) != 2 {
		t.Errorf("%d units at the bench, %d in the factory ledger", len(local), len(there))
	}
	rep, err := fac.FactoryReport(ctx, ledger.FactoryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	closed := 0
	bs, _ := fac.Units(ctx, ledger.UnitFilter{})
	for _, u := range bs {
		if b, err := fac.Batch(ctx, u.BatchID); err == nil && b.State == ledger.BatchClosed {
			closed++
		}
	}
	if closed != 2 || rep.Total.Passed != 2 {
		t.Errorf("factory ledger: %d units in closed batches, %d passed", closed, rep.Total.Passed)
	}
}

// TestPipelineWithoutFactory: without station.ledger the outbox is off,
// even on a ledger that forwarded before.
func TestPipelineWithoutFactory(t *testing.T) {
	e := startBenchWith(t, sim.BenchConfig{Boards: 2}, 1, benchOpt{})
	if _, ok := e.p.Factory(); ok {
		t.Fatal("a forwarder without a factory ledger")
	}
	e.runUntilDone(t, 3*time.Minute)
	if n, err := e.led.Backlog(context.Background()); err != nil || n != 0 {
		t.Errorf("a station without a factory ledger keeps an outbox of %d (%v)", n, err)
	}
}
