package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/metrics"
)

// fakeStation is a running station as the scrape sees it.
type fakeStation struct {
	mu     sync.Mutex
	slots  []lines.SlotView
	health []lines.LineHealth
}

func (f *fakeStation) Slots() []lines.SlotView {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]lines.SlotView(nil), f.slots...)
}

func (f *fakeStation) Health() []lines.LineHealth {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]lines.LineHealth(nil), f.health...)
}

func serve(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv, err := metrics.Listen("127.0.0.1:0", m.Handler(zerolog.Nop()), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return "http://" + srv.Addr().String()
}

// TestScrape reads slot states, vault health and the outbox backlog
// from the station when Prometheus scrapes the endpoint.
func TestScrape(t *testing.T) {
	checked := time.Unix(1764576000, 500e6)
	st := &fakeStation{
		slots: []lines.SlotView{
			{ID: "A1", Line: "l1", State: lines.StateFlashing}, {ID: "A2", Line: "l1", State: lines.StateFlashing},
			{ID: "A3", Line: "l1", State: lines.StateIdle}, {ID: "B1", Line: "l2", State: lines.StateRegister},
			{ID: "B2", Line: "l2", State: lines.StateDisabled},
		},
		health: []lines.LineHealth{
			{Line: "l1", VaultOK: true, VaultChecked: checked, VaultLatency: 12 * time.Millisecond},
			{Line: "l2", VaultOK: false, VaultError: "connection refused", VaultChecked: checked, VaultLatency: 3 * time.Millisecond},
			{Line: "l3"}, // not checked yet
		},
	}
	for _, tc := range []struct {
		name    string
		backlog metrics.Backlogger
		want    []want
		absent  []string
	}{
		{name: "no outbox", absent: []string{metrics.NameOutboxBacklog}},
		{name: "an outbox with 37 rows to send",
			backlog: metrics.BacklogFunc(func(context.Context) (int, error) { return 37, nil }),
			want:    []want{{metrics.NameOutboxBacklog, "", 37}}},
		{name: "an outbox that fails: the rest is served",
			backlog: metrics.BacklogFunc(func(context.Context) (int, error) { return 0, errors.New("database is locked") }),
			absent:  []string{metrics.NameOutboxBacklog}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New(metrics.Options{StationID: "bench-1", Lines: []string{"l1", "l2", "l3"}, Source: st, Backlog: tc.backlog})
			url := serve(t, m)
			fs := scrape(t, url+"/metrics")
			fs.check(t, append([]want{
				{metrics.NameStationInfo, "station_id=bench-1", 1},
				{metrics.NameSlots, "line=l1,state=flashing", 2},
				{metrics.NameSlots, "line=l1,state=idle", 1},
				{metrics.NameSlots, "line=l1,state=register", 0},
				{metrics.NameSlots, "line=l2,state=register", 1},
				{metrics.NameSlots, "line=l2,state=disabled", 1},
				{metrics.NameSlots, "line=l3,state=idle", 0},
				{metrics.NameVaultUp, "line=l1", 1},
				{metrics.NameVaultUp, "line=l2", 0},
				{metrics.NameVaultProbe, "line=l1", 0.012},
				{metrics.NameVaultLastProbe, "line=l2", 1764576000.5},
			}, tc.want...))
			if got, want := fs.series(metrics.NameSlots), 3*len(metrics.SlotStates); got != want {
				t.Errorf("%d slot series, want %d (every state of every line)", got, want)
			}
			if _, ok := fs.value(metrics.NameVaultUp, "line=l3"); ok {
				t.Error("vault_up of a line whose vault was never checked")
			}
			for _, name := range tc.absent {
				if fs[name] != nil {
					t.Errorf("%s present", name)
				}
			}
		})
	}
}

// TestEndpoint: GET /metrics and a page at /; nothing else.
func TestEndpoint(t *testing.T) {
	m := metrics.New(metrics.Options{StationID: "bench-1"})
	url := serve(t, m)
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/metrics", 200, "# TYPE flashstation_station_info gauge"},
		{"HEAD", "/metrics", 200, ""},
		{"GET", "/", 200, `<a href="/metrics">`},
		{"POST", "/metrics", 405, ""},
		{"GET", "/debug/pprof/", 404, ""},
		{"GET", "/metrics/x", 404, ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, url+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
				t.Errorf("%s %s: %s, body %.200q; want %d with %q", tc.method, tc.path, resp.Status, body, tc.status, tc.body)
			}
		})
	}
}

// TestListenRefused: a taken address is an error at start.
func TestListenRefused(t *testing.T) {
	m := metrics.New(metrics.Options{})
	srv, err := metrics.Listen("127.0.0.1:0", m.Handler(zerolog.Nop()), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := metrics.Listen(srv.Addr().String(), m.Handler(zerolog.Nop()), zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "metrics:") {
		t.Errorf("a second listener on %s: %v", srv.Addr(), err)
	}
}

// TestConsumerKeepsUp: while a scrape is stuck (the outbox does not
// answer), the consumer takes a burst of 100,000 progress events and a
// thousand units, each sent blocking (stricter than the pipeline, which
// drops progress for a subscriber that falls behind), through a small
// buffer; everything is counted before the scrape is let go.
func TestConsumerKeepsUp(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	// The first scrape's call is stuck until released; later ones answer.
	backlog := metrics.BacklogFunc(func(ctx context.Context) (int, error) {
		if calls.Add(1) > 1 {
			return 5, nil
		}
		close(entered)
		select {
		case <-release:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return 5, nil
	})
	st := &fakeStation{slots: []lines.SlotView{{ID: "A1", Line: "l1", State: lines.StateFlashing}}}
	m := metrics.New(metrics.Options{StationID: "bench-1", Lines: []string{"l1"}, Source: st, Backlog: backlog, BacklogTimeout: time.Hour})
	url := serve(t, m)

	stuck := make(chan error, 1)
	go func() {
		resp, err := http.Get(url + "/metrics")
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		stuck <- err
	}()
	<-entered // the scrape is inside the collection

	events := make(chan lines.Event, 16)
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		m.Consume(context.Background(), events)
	}()
	const progress, units = 100_000, 1000
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range progress {
			events <- lines.Event{Kind: lines.EventProgress, Slot: "A1", Line: "l1", Unit: int64(i/100 + 1),
				Progress: lines.Progress{Phase: "write", Done: int64(i), Total: progress}}
			if i%(progress/units) == 0 {
				u := int64(i/100 + 1)
				events <- state("A1", "l1", u, lines.StateRegister, float64(i))
				events <- flashed("l1", 1<<20, time.Second, 0)
				events <- state("A1", "l1", u, lines.StatePass, float64(i)+1)
				events <- verdict("A1", "l1", u, "pass", "")
			}
		}
		close(events)
	}()
	// A generous ceiling turns a stalled consumer into a failure.
	select {
	case <-consumed:
	case <-time.After(2 * time.Minute):
		t.Fatal("the consumer stalled behind a stuck scrape")
	}
	<-sent
	select {
	case err := <-stuck:
		t.Fatalf("the stuck scrape ended early (%v): the test proves nothing", err)
	default:
	}
	fs := gather(t, m.Registry()) // a second scrape, while the first is stuck
	fs.check(t, []want{
		{metrics.NameUnits, "line=l1,reason=,verdict=pass", units},
		{metrics.NameFlashWritten, "line=l1", units << 20},
		{metrics.NameRegistration + "_count", "line=l1", units},
		{metrics.NameRegistration + "_sum", "line=l1", units},
	})
	close(release)
	if err := <-stuck; err != nil {
		t.Errorf("the stuck scrape, let go: %v", err)
	}
}
