package serialvault_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

// flakyRecorder fails while failing is set, then records in the ledger.
type flakyRecorder struct {
	led     *ledger.Ledger
	failing atomic.Bool
	done    atomic.Int32  // records that returned
	gate    chan struct{} // when set, each record waits for it
	called  chan struct{} // when set, each record signals it first
}

func (f *flakyRecorder) RecordSerialAssertion(ctx context.Context, a ledger.SerialAssertion) (int64, bool, error) {
	defer f.done.Add(1)
	if f.called != nil {
		f.called <- struct{}{}
	}
	if f.gate != nil {
		<-f.gate
	}
	if f.failing.Load() {
		return 0, false, errors.New("disk full")
	}
	return f.led.RecordSerialAssertion(ctx, a)
}

// ceiling bounds a wait on an event; it only turns a hang into a failure.
const ceiling = 2 * time.Minute

// answer is one answer of the proxy as it starts: the request's path, the
// status, and how many ledger writes had returned by then.
type answer struct {
	path     string
	status   int
	recorded int32
}

// answerObserver is the bench's view of the proxy's answers, taken in the
// HTTP server in front of the proxy when the proxy writes the header.
type answerObserver struct {
	mu      sync.Mutex
	answers []answer
	more    chan struct{} // closed and replaced on each answer
}

func (o *answerObserver) add(a answer) {
	o.mu.Lock()
	o.answers = append(o.answers, a)
	close(o.more)
	o.more = make(chan struct{})
	o.mu.Unlock()
}

func (o *answerObserver) all() []answer {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]answer(nil), o.answers...)
}

// await waits until at least n answers match.
func (o *answerObserver) await(t testing.TB, n int, what string, match func(answer) bool) {
	t.Helper()
	limit := time.After(ceiling)
	for {
		o.mu.Lock()
		got := 0
		for _, a := range o.answers {
			if match(a) {
				got++
			}
		}
		more := o.more
		o.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-more:
		case <-limit:
			t.Fatalf("%s: %d of %d answers after %s", what, got, n, ceiling)
		}
	}
}

// observedWriter reports the proxy's answer when its header is written.
type observedWriter struct {
	http.ResponseWriter
	report func(status int)
	once   sync.Once
}

func (w *observedWriter) WriteHeader(code int) {
	w.once.Do(func() { w.report(code) })
	w.ResponseWriter.WriteHeader(code)
}

func (w *observedWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { w.report(http.StatusOK) })
	return w.ResponseWriter.Write(p)
}

type bench struct {
	vault    *vaulttest.Vault
	vaultSrv *httptest.Server
	proxy    *serialvault.Proxy
	proxySrv *httptest.Server
	led      *ledger.Ledger
	rec      *flakyRecorder
	answers  *answerObserver
	model    *serialvault.Assertion
	windows  *serialvault.Windows
	last     *serialvault.Window // the window open opened last

	mu       sync.Mutex
	captures []serialvault.Capture
}

// newBenchWithKey is a bench whose vault signs with (and the line trusts)
// the given key.
func newBenchWithKey(t testing.TB, k *serialvault.PrivateKey) *bench {
	return newBench(t, benchOpt{vaultSigner: k, trusted: k})
}

type benchOpt struct {
	trusted     *serialvault.PrivateKey // the line's brand key; default testKey(0)
	vaultSigner *serialvault.PrivateKey // default testKey(0), the trusted key
	apiKey      string                  // the line's configured api-key
}

func newBench(t testing.TB, o benchOpt) *bench {
	t.Helper()
	if o.vaultSigner == nil {
		o.vaultSigner = testKey(t)
	}
	if o.apiKey == "" {
		o.apiKey = lineAPIKey
	}
	if o.trusted == nil {
		o.trusted = testKey(t)
	}
	b := &bench{model: acmeModel(t)}
	b.vault, b.vaultSrv = newVault(t, o.vaultSigner)
	var err error
	b.led, err = ledger.Open(context.Background(), filepath.Join(t.TempDir(), ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.led.Close() })
	ctx := context.Background()
	b.led.EnsureStation(ctx, ledger.Station{ID: "bench"})
	b.led.EnsureLine(ctx, ledger.Line{ID: "line1", StationID: "bench"})
	b.rec = &flakyRecorder{led: b.led}
	b.windows = serialvault.NewWindows(true)
	ring := serialvault.NewKeyRing()
	ring.Add(serialvault.TrustedKey{Key: o.trusted.Public(), AccountID: "acme"})
	client, err := serialvault.NewClient(b.vaultSrv.URL+"/v1/", serialvault.ClientOptions{APIKey: secretNew(o.apiKey), Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	b.proxy, err = serialvault.NewProxy(serialvault.ProxyConfig{
		LineID: "line1", BrandID: "acme", Model: "acme-gw-armhf", Keys: ring, Vault: client, Recorder: b.rec, Windows: b.windows,
		OnCapture: func(c serialvault.Capture) { b.mu.Lock(); b.captures = append(b.captures, c); b.mu.Unlock() },
		Logger:    zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	b.answers = &answerObserver{more: make(chan struct{})}
	b.proxySrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.proxy.ServeHTTP(&observedWriter{ResponseWriter: w, report: func(status int) {
			b.answers.add(answer{path: r.URL.Path, status: status, recorded: b.rec.done.Load()})
		}}, r)
	}))
	t.Cleanup(b.proxySrv.Close)
	return b
}

// open opens a registration window for serial (unit 0: a standalone
// proxy's expected serial), closed when the test ends.
func (b *bench) open(t testing.TB, serial string) *serialvault.Window {
	t.Helper()
	w, err := b.windows.Open(serialvault.WindowSpec{Slot: "T1", Expected: serial})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	b.last = w
	return w
}

// device is a board registering serial, with its window open.
func (b *bench) device(t testing.TB, key int, serial string) *vaulttest.Device {
	b.open(t, serial)
	return &vaulttest.Device{
		Key: testKeyN(t, key), Model: b.model, Serial: serial, URL: b.proxySrv.URL + "/v1",
		RetryWait: 5 * time.Millisecond, NoNetworkWait: 5 * time.Millisecond, PollWait: 5 * time.Millisecond,
		FailWait: 5 * time.Millisecond, MaxFailures: 1,
	}
}

func (b *bench) recorded(t testing.TB) []ledger.SerialAssertion {
	t.Helper()
	as, err := b.led.SerialAssertions(context.Background(), ledger.AssertionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return as
}

func (b *bench) postSerial(t testing.TB, body []byte) (int, string, string) {
	t.Helper()
	resp, err := http.Post(b.proxySrv.URL+"/v1/serial", serialvault.AssertionType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(data)
}

func TestProxyHappyPath(t *testing.T) {
	b := newBench(t, benchOpt{})
	dev := b.device(t, 1, "LINE1-000001")
	dev.Body = []byte("mac: \"00:11:22:33:44:55\"\n")
	res, err := dev.Register(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	as := b.recorded(t)
	if len(as) != 1 {
		t.Fatalf("%d assertions recorded", len(as))
	}
	a := as[0]
	if a.Serial != "LINE1-000001" || a.BrandID != "acme" || a.Model != "acme-gw-armhf" || a.LineID != "line1" ||
		a.Via != ledger.ViaProxy || a.Duplicate || a.Revision != 1 || a.DeviceKeyID != testKeyN(t, 1).Public().ID() {
		t.Errorf("recorded %+v", a)
	}
	// What the device got is byte for byte what the ledger holds.
	if string(res.Raw) != string(a.Text) {
		t.Errorf("device got\n%s\nledger holds\n%s", res.Raw, a.Text)
	}
	if len(b.captures) != 1 || b.captures[0].Serial != "LINE1-000001" || b.captures[0].DeviceKeyID != a.DeviceKeyID || b.captures[0].AssertionID != a.ID {
		t.Errorf("captures %+v", b.captures)
	}
	if st := b.proxy.Stats(); st.Recorded != 1 || st.RequestIDs != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestProxyRecordsBeforeAnswering holds the ledger write and checks the
// device has no answer until it completes: the proxy's answer to the
// serial request starts only after the ledger write returned.
func TestProxyRecordsBeforeAnswering(t *testing.T) {
	b := newBench(t, benchOpt{})
	b.rec.gate = make(chan struct{})
	b.rec.called = make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		_, err := b.device(t, 1, "ORDER-1").Register(context.Background())
		done <- err
	}()
	select {
	case <-b.rec.called:
	case err := <-done:
		t.Fatalf("device done before the serial was recorded (%v)", err)
	case <-time.After(ceiling):
		t.Fatal("recorder never called")
	}
	// The ledger write is held: the device cannot have its answer.
	select {
	case err := <-done:
		t.Fatalf("device got its answer before the serial was recorded (%v)", err)
	default:
	}
	close(b.rec.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(b.recorded(t)) != 1 {
		t.Error("not recorded")
	}
	serials := 0
	for _, a := range b.answers.all() {
		if strings.HasSuffix(a.path, "/serial") {
			serials++
			if a.recorded == 0 {
				t.Errorf("the proxy answered %d to the serial request before the ledger write returned", a.status)
			}
		}
	}
	if serials != 1 {
		t.Errorf("%d answers to serial requests, want 1", serials)
	}
}

func TestProxyForwardsVaultRefusals(t *testing.T) {
	// A line configured with the wrong api-key: the vault's 400 reaches the
	// device unchanged.
	b := newBench(t, benchOpt{apiKey: "not-the-model-key"})
	b.open(t, "ANY-1")
	resp, err := http.Post(b.proxySrv.URL+"/v1/request-id", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `{"success":false,"error_code":"invalid-api-key","error_subcode":"","message":"Invalid API key used","StatusCode":400}` + "\n"
	if resp.StatusCode != 400 || string(body) != want || resp.Header.Get("Content-Type") != "application/json; charset=UTF-8" {
		t.Errorf("got %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if st := b.proxy.Stats(); st.VaultErrors != 1 {
		t.Errorf("stats %+v", st)
	}
}

func (b *bench) stream(t testing.TB, key int, requestID, serial string, body []byte) []byte {
	req, err := serialvault.NewSerialRequest(testKeyN(t, key), "acme", "acme-gw-armhf", requestID, serial, body, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	return append(append(req.Encode(), '\n'), b.model.Encode()...)
}

func (b *bench) requestID(t testing.TB) string {
	c := fastClient(t, b.proxySrv.URL+"/v1/", "ignored: the proxy adds the line's key")
	id, err := c.RequestID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestProxyNonceReuse(t *testing.T) {
	b := newBench(t, benchOpt{})
	b.open(t, "NR-1")
	w2 := b.open(t, "NR-2")
	id := b.requestID(t)
	if st, _, body := b.postSerial(t, b.stream(t, 1, id, "NR-1", nil)); st != 200 {
		t.Fatalf("%d %s", st, body)
	}
	// Another request with the spent nonce: refused as the vault would
	// (invalid-nonce), without calling it, and kept as NR-2's refusal.
	before := b.vault.Requests("/v1/serial")
	st, ct, body := b.postSerial(t, b.stream(t, 2, id, "NR-2", nil))
	if st != 400 || !strings.Contains(body, `"error_code":"invalid-nonce"`) || ct != "application/json; charset=UTF-8" {
		t.Errorf("reused nonce: %d %s", st, body)
	}
	if b.vault.Requests("/v1/serial") != before {
		t.Error("a spent nonce reached the vault")
	}
	if _, r, _ := w2.State(); r == nil || r.By != serialvault.RefusedByStation || r.Code != "invalid-nonce" {
		t.Errorf("NR-2's refusal %+v", r)
	}
	if n := len(b.recorded(t)); n != 1 {
		t.Errorf("%d recorded", n)
	}
}

func TestProxyRefusesBadRequests(t *testing.T) {
	b := newBench(t, benchOpt{})
	for _, serial := range []string{"F-1", "F-2", "M-1", "FROM-BODY"} {
		b.open(t, serial)
	}
	otherModel, err := serialvault.Sign(map[string]any{
		"type": "model", "authority-id": "acme", "series": "16", "brand-id": "acme", "model": "other-model",
		"architecture": "armhf", "gadget": "g", "kernel": "k", "timestamp": "2026-01-01T00:00:00Z",
	}, nil, testKey(t), fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	forged := b.stream(t, 1, "0123456789abcdef0123456789abcdef01234567", "F-1", nil)
	forged = bytes.Replace(forged, []byte("serial: F-1"), []byte("serial: F-2"), 1)
	for _, tc := range []struct {
		name string
		body []byte
		code string
	}{
		{"missing serial", b.stream(t, 1, b.requestID(t), "", []byte("mac: x\n")), "invalid-serial"},
		{"loose serial", b.stream(t, 1, b.requestID(t), "bad serial!", nil), "invalid-serial"},
		{"mismatched model", func() []byte {
			req, _ := serialvault.NewSerialRequest(testKeyN(t, 1), "acme", "other-model", b.requestID(t), "M-1", nil, fixedNow)
			return append(append(req.Encode(), '\n'), otherModel.Encode()...)
		}(), "mismatched-model"},
		{"forged request", forged, "invalid-assertion"},
		{"garbage", []byte("GET / HTTP/1.0\n\n"), "invalid-assertion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.vault.Requests("/v1/serial")
			st, _, body := b.postSerial(t, tc.body)
			if st != 400 || !strings.Contains(body, `"error_code":"`+tc.code+`"`) || !strings.Contains(body, "station: ") {
				t.Errorf("got %d %s", st, body)
			}
			if b.vault.Requests("/v1/serial") != before {
				t.Error("a refused request reached the vault")
			}
		})
	}
	// A missing serial in the body's YAML is taken as the vault would.
	if st, _, body := b.postSerial(t, b.stream(t, 1, b.requestID(t), "", []byte("serial: FROM-BODY\n"))); st != 200 {
		t.Errorf("serial in body: %d %s", st, body)
	}
	if len(b.recorded(t)) != 1 {
		t.Error("want exactly the body-serial recorded")
	}
}

// TestProxyRefusesForgedSerial: a vault answering with a serial signed by a
// key the line does not trust is refused, and nothing is recorded.
func TestProxyRefusesForgedSerial(t *testing.T) {
	b := newBench(t, benchOpt{vaultSigner: testKeyN(t, 3)})
	dev := b.device(t, 1, "FORGED-1")
	b.open(t, "FORGED-2")
	_, err := dev.Register(context.Background())
	if err == nil {
		t.Fatal("device registered with a forged serial")
	}
	if n := len(b.recorded(t)); n != 0 {
		t.Errorf("%d forged assertions recorded", n)
	}
	if st := b.proxy.Stats(); st.Rejected == 0 {
		t.Errorf("stats %+v", st)
	}
	if len(b.captures) != 0 {
		t.Error("forged serial handed to the station")
	}
	// The device saw a 502 (it retries later with a new request).
	st, _, body := b.postSerial(t, b.stream(t, 1, b.requestID(t), "FORGED-2", nil))
	if st != http.StatusBadGateway || !strings.Contains(body, "not trusted") {
		t.Errorf("forged answer: %d %s", st, body)
	}
}

// TestProxyVaultDown: the device gets 503 while the vault is down, retries
// like snapd, and succeeds once the vault is back.
func TestProxyVaultDown(t *testing.T) {
	b := newBench(t, benchOpt{})
	b.vault.SetUnavailable(true)
	dev := b.device(t, 1, "DOWN-1")
	dev.MaxFailures = 0
	done := make(chan error, 1)
	var res *vaulttest.Result
	go func() {
		var err error
		res, err = dev.Register(context.Background())
		done <- err
	}()
	b.answers.await(t, 3, "503s while the vault is down", func(a answer) bool { return a.status == http.StatusServiceUnavailable })
	if st := b.proxy.Stats(); st.Unavailable < 3 {
		t.Errorf("stats %+v after three 503s", st)
	}
	b.vault.SetUnavailable(false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if res.Retries < 3 || len(b.recorded(t)) != 1 {
		t.Errorf("retries %d, recorded %d", res.Retries, len(b.recorded(t)))
	}
}

// TestProxyStorageFailure: when the ledger cannot record, the device gets
// 503 and nothing is half-recorded; its retry of the same request is
// answered from the verified answer once storage is back, without a second
// signature from the vault.
func TestProxyStorageFailure(t *testing.T) {
	b := newBench(t, benchOpt{})
	b.rec.failing.Store(true)
	b.open(t, "STORE-1")
	body := b.stream(t, 1, b.requestID(t), "STORE-1", nil)
	for range 2 {
		st, _, ans := b.postSerial(t, body)
		if st != http.StatusServiceUnavailable || !strings.Contains(ans, "storage-unavailable") {
			t.Fatalf("storage down: %d %s", st, ans)
		}
	}
	if len(b.recorded(t)) != 0 || len(b.captures) != 0 {
		t.Fatal("something recorded while storage failed")
	}
	b.rec.failing.Store(false)
	st, ct, ans := b.postSerial(t, body)
	if st != 200 || ct != serialvault.AssertionType {
		t.Fatalf("after storage is back: %d %s", st, ans)
	}
	as := b.recorded(t)
	if len(as) != 1 || string(as[0].Text) != ans {
		t.Errorf("recorded %d, text matches %v", len(as), len(as) == 1 && string(as[0].Text) == ans)
	}
	if n := len(b.vault.SigningLog()); n != 1 {
		t.Errorf("vault signed %d times, want once", n)
	}
	// Once more (the answer was lost on the way): same answer, no new record.
	if st, _, again := b.postSerial(t, body); st != 200 || again != ans {
		t.Errorf("replay: %d", st)
	}
	if len(b.recorded(t)) != 1 || len(b.captures) != 1 {
		t.Errorf("replay recorded again: %d records, %d captures", len(b.recorded(t)), len(b.captures))
	}
}

func TestProxyDuplicateSerial(t *testing.T) {
	b := newBench(t, benchOpt{})
	ctx := context.Background()
	first := b.device(t, 1, "DUP-1")
	if _, err := first.Register(ctx); err != nil {
		t.Fatal(err)
	}
	b.last.Close() // the first board's unit ended
	res, err := b.device(t, 2, "DUP-1").Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Serial.Revision() != 2 {
		t.Errorf("revision %d", res.Serial.Revision())
	}
	as := b.recorded(t)
	if len(as) != 2 || as[0].Duplicate || !as[1].Duplicate || as[1].Revision != 2 {
		t.Errorf("recorded %+v", as)
	}
	if len(b.captures) != 2 || !b.captures[1].Duplicate {
		t.Errorf("captures %+v", b.captures)
	}
}

func TestProxyRoutes(t *testing.T) {
	b := newBench(t, benchOpt{})
	b.open(t, "R-1")
	resp, _ := http.Get(b.proxySrv.URL + "/v1/serial")
	if resp.StatusCode != 405 {
		t.Errorf("GET serial: %d", resp.StatusCode)
	}
	resp, _ = http.Post(b.proxySrv.URL+"/admin", "", nil)
	if resp.StatusCode != 404 {
		t.Errorf("unknown path: %d", resp.StatusCode)
	}
	// Another base path works too: the gadget's URL decides it.
	resp, _ = http.Post(b.proxySrv.URL+"/devices/line1/request-id", "", nil)
	if resp.StatusCode != 200 {
		t.Errorf("other base path: %d", resp.StatusCode)
	}
	big := bytes.Repeat([]byte("a"), 5<<20)
	if st, _, _ := b.postSerial(t, big); st != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d", st)
	}
}
