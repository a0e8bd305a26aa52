package serialvault_test

// Attacks on the recording proxy from the bench network: an attacker who
// can reach the proxy, read the boards' plain-HTTP traffic, and sign
// serial-requests with device keys of its own. Each test says what it
// proves through the vault double's signing log and request counts, the
// status the attacker got, the ledger and the windows' states.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path"
	"path/filepath"
	"runtime"
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

// events counts what the attack bench saw, by name, and lets a test wait
// for counts (on each event, never on the clock).
type events struct {
	mu   sync.Mutex
	n    map[string]int
	more chan struct{} // closed and replaced on each event
}

func newEvents() *events { return &events{n: map[string]int{}, more: make(chan struct{})} }

func (e *events) add(name string) {
	e.mu.Lock()
	e.n[name]++
	close(e.more)
	e.more = make(chan struct{})
	e.mu.Unlock()
}

func (e *events) count(names ...string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	sum := 0
	for _, name := range names {
		sum += e.n[name]
	}
	return sum
}

// await waits until the events named add up to at least n.
func (e *events) await(t testing.TB, n int, names ...string) {
	t.Helper()
	limit := time.NewTimer(ceiling)
	defer limit.Stop()
	for {
		e.mu.Lock()
		got := 0
		for _, name := range names {
			got += e.n[name]
		}
		more := e.more
		e.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-more:
		case <-limit.C:
			t.Fatalf("%v: %d of %d events after %s", names, got, n, ceiling)
		}
	}
}

// vaultGate holds the vault double's answers to serial requests: the
// double has done its work (signed and logged, or refused) when "vault
// answered" is counted; the answer goes out once the gate opens. A caller
// that leaves while its answer is held is counted as "vault abandoned".
type vaultGate struct {
	ev      *events
	release chan struct{}
	once    sync.Once
}

func (g *vaultGate) open() { g.once.Do(func() { close(g.release) }) }

func (g *vaultGate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/serial" {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		g.ev.add("vault answered")
		select {
		case <-g.release:
		case <-r.Context().Done():
			g.ev.add("vault abandoned")
			return
		}
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// clock is the proxy's clock, moved on by tests.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

// eofBody reports when the proxy has read a request body to its end.
type eofBody struct {
	io.ReadCloser
	once sync.Once
	eof  func()
}

func (b *eofBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.eof)
	}
	return n, err
}

type attackOpt struct {
	allow         []netip.Prefix
	unpredicted   bool
	gate          bool // hold the vault's serial answers until gate.open
	maxConcurrent int
}

// attackBench is a bench (see proxy_test.go) with the knobs an attacker's
// test needs: proxy.allow, an unpredicted line, a gated vault, a clock,
// ledger units for the windows, and events from the HTTP server in front
// of the proxy: "<endpoint> entered", "<endpoint> body read" (the proxy
// read the whole body), "<endpoint> caller gone" (the caller hung up while
// the proxy was serving it) and "<endpoint> served".
type attackBench struct {
	*bench
	ev    *events
	gate  *vaultGate
	clock *clock
	batch int64
}

func newAttackBench(t testing.TB, o attackOpt) *attackBench {
	t.Helper()
	ab := &attackBench{bench: &bench{model: acmeModel(t)}, ev: newEvents(), clock: &clock{}}
	b := ab.bench
	b.vault = vaulttest.New(vaulttest.Options{
		Models: []vaulttest.Model{{BrandID: "acme", Model: "acme-gw-armhf", APIKey: lineAPIKey, Key: testKey(t)}},
	})
	var vh http.Handler = b.vault.Handler()
	if o.gate {
		ab.gate = &vaultGate{ev: ab.ev, release: make(chan struct{})}
		vh = ab.gate.wrap(vh)
	}
	b.vaultSrv = httptest.NewServer(vh)
	t.Cleanup(b.vaultSrv.Close)
	ctx := context.Background()
	var err error
	b.led, err = ledger.Open(ctx, filepath.Join(t.TempDir(), ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.led.Close() })
	if err := b.led.EnsureStation(ctx, ledger.Station{ID: "bench"}); err != nil {
		t.Fatal(err)
	}
	if err := b.led.EnsureLine(ctx, ledger.Line{ID: "line1", StationID: "bench"}); err != nil {
		t.Fatal(err)
	}
	if ab.batch, err = b.led.StartBatch(ctx, ledger.Batch{LineID: "line1", Operator: "attack", Planned: 100, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	b.rec = &flakyRecorder{led: b.led}
	b.windows = serialvault.NewWindows(!o.unpredicted)
	ring := serialvault.NewKeyRing()
	ring.Add(serialvault.TrustedKey{Key: testKey(t).Public(), AccountID: "acme"})
	client, err := serialvault.NewClient(b.vaultSrv.URL+"/v1/", serialvault.ClientOptions{APIKey: secretNew(lineAPIKey), Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	b.proxy, err = serialvault.NewProxy(serialvault.ProxyConfig{
		LineID: "line1", BrandID: "acme", Model: "acme-gw-armhf", Keys: ring, Vault: client, Recorder: b.rec, Windows: b.windows,
		Allow: o.allow, MaxConcurrent: o.maxConcurrent, Now: ab.clock.now,
		OnCapture: func(c serialvault.Capture) { b.mu.Lock(); b.captures = append(b.captures, c); b.mu.Unlock() },
		Logger:    zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	b.answers = &answerObserver{more: make(chan struct{})}
	b.proxySrv = httptest.NewServer(http.HandlerFunc(ab.serve))
	t.Cleanup(b.proxySrv.Close)
	if ab.gate != nil {
		t.Cleanup(ab.gate.open) // runs first: no handler stays held at the vault
	}
	return ab
}

func (ab *attackBench) serve(w http.ResponseWriter, r *http.Request) {
	kind := path.Base(r.URL.Path)
	ab.ev.add(kind + " entered")
	r.Body = &eofBody{ReadCloser: r.Body, eof: func() { ab.ev.add(kind + " body read") }}
	var serving atomic.Bool
	serving.Store(true)
	stop := context.AfterFunc(r.Context(), func() {
		if serving.Load() {
			ab.ev.add(kind + " caller gone")
		}
	})
	ab.proxy.ServeHTTP(&observedWriter{ResponseWriter: w, report: func(status int) {
		ab.answers.add(answer{path: r.URL.Path, status: status, recorded: ab.rec.done.Load()})
	}}, r)
	serving.Store(false)
	stop()
	ab.ev.add(kind + " served")
}

// openUnit starts a ledger unit in slot and opens its registration window
// expecting serial (ignored on an unpredicted line), closed when the test
// ends.
func (ab *attackBench) openUnit(t testing.TB, slot, serial string) *serialvault.Window {
	t.Helper()
	id, err := ab.led.StartUnit(context.Background(), ledger.Unit{BatchID: ab.batch, LineID: "line1", SlotID: slot,
		HWSerial: serial, Stage: "boot", StartedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := ab.windows.Open(serialvault.WindowSpec{Unit: id, Slot: slot, HWSerial: serial, Expected: serial})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	ab.last = w
	return w
}

func (ab *attackBench) capturesSeen() []serialvault.Capture {
	ab.mu.Lock()
	defer ab.mu.Unlock()
	return append([]serialvault.Capture(nil), ab.captures...)
}

// reply is what a caller got from the proxy.
type reply struct {
	status int
	header http.Header
	body   string
	close  bool // the proxy closes the connection after it
	err    error
}

// send posts body to the proxy's path; it may run outside the test's
// goroutine.
func (b *bench) send(ctx context.Context, p string, body []byte, header http.Header) reply {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.proxySrv.URL+p, bytes.NewReader(body))
	if err != nil {
		return reply{err: err}
	}
	req.Header.Set("Content-Type", serialvault.AssertionType)
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := b.proxySrv.Client().Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(data), close: resp.Close, err: err}
}

func awaitReply(t testing.TB, ch <-chan reply) reply {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(ceiling):
		t.Fatalf("no reply after %s", ceiling)
		return reply{}
	}
}

// wantCode checks a station answer's status and error code.
func wantCode(t testing.TB, what string, status int, body string, wantStatus int, code string) {
	t.Helper()
	if status != wantStatus || !strings.Contains(body, `"error_code":"`+code+`"`) {
		t.Errorf("%s: got %d %s; want %d %s", what, status, brief(body), wantStatus, code)
	}
}

// brief is an answer cut for an error message.
func brief(body string) string {
	body = strings.TrimSpace(body)
	if strings.HasPrefix(body, "type: serial\n") {
		return "(a serial assertion)"
	}
	if len(body) > 300 {
		return body[:300] + "..."
	}
	return body
}

// records describes recorded serial assertions without their text.
func records(as []ledger.SerialAssertion) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d records", len(as))
	for _, a := range as {
		fmt.Fprintf(&b, "; #%d %s rev %d key %.12s unit %d", a.ID, a.Serial, a.Revision, a.DeviceKeyID, a.UnitID)
	}
	return b.String()
}

// wantVaultUntouched checks the vault signed nothing and saw no serial
// request beyond before.
func wantVaultUntouched(t testing.TB, b *bench, before int) {
	t.Helper()
	if n := b.vault.Requests("/v1/serial") - before; n != 0 {
		t.Errorf("%d serial requests reached the vault", n)
	}
	if log := b.vault.SigningLog(); len(log) != 0 {
		t.Errorf("the vault signed %d serials: %+v", len(log), log)
	}
}

// wantEmptyWindow checks a window has neither a serial nor a refusal.
func wantEmptyWindow(t testing.TB, what string, w *serialvault.Window) {
	t.Helper()
	if c, r, _ := w.State(); c != nil || r != nil {
		t.Errorf("%s: window has capture %+v, refusal %+v; want neither", what, c, r)
	}
}

const bogusNonce = "0123456789abcdef0123456789abcdef01234567"

// TestAttackUnexpectedSerial: a serial no open window expects, in the
// header or in the body, is refused 403 no-window; the vault is never
// called, nothing is recorded, and the open window keeps no refusal.
func TestAttackUnexpectedSerial(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	w := ab.openUnit(t, "A1", "EXPECTED-1")
	for _, tc := range []struct {
		name, header string
		body         []byte
	}{
		{"header", "INTRUDER-1", nil},
		{"body", "", []byte("serial: INTRUDER-2\n")},
		{"other case", "expected-1", nil},
		{"longer", "EXPECTED-10", nil},
		{"shorter", "EXPECTED", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _, body := ab.postSerial(t, ab.stream(t, 2, ab.requestID(t), tc.header, tc.body))
			wantCode(t, "unexpected serial", st, body, http.StatusForbidden, "no-window")
		})
	}
	wantVaultUntouched(t, ab.bench, 0)
	if n := len(ab.recorded(t)); n != 0 {
		t.Errorf("%d assertions recorded", n)
	}
	wantEmptyWindow(t, "EXPECTED-1", w)
	if st := ab.proxy.Stats(); st.NoWindow != 5 {
		t.Errorf("stats %+v", st)
	}
}

// TestAttackSecondIdentity: once a window has its identity, a request for
// its serial with another device key (and a fresh, genuine request-id) is
// refused 409 identity-taken without calling the vault.
func TestAttackSecondIdentity(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	w := ab.openUnit(t, "A1", "UNIT-1")
	st, _, ans := ab.postSerial(t, ab.stream(t, 1, ab.requestID(t), "UNIT-1", nil))
	if st != http.StatusOK {
		t.Fatalf("genuine board: %d %s", st, ans)
	}
	for _, key := range []int{2, 3, 0} {
		st, _, body := ab.postSerial(t, ab.stream(t, key, ab.requestID(t), "UNIT-1", []byte("serial: UNIT-1\n")))
		wantCode(t, fmt.Sprintf("key %d", key), st, body, http.StatusConflict, "identity-taken")
	}
	if n := ab.vault.Requests("/v1/serial"); n != 1 {
		t.Errorf("%d serial requests reached the vault, want 1", n)
	}
	genuine := testKeyN(t, 1).Public().ID()
	if log := ab.vault.SigningLog(); len(log) != 1 || log[0].SerialNumber != "UNIT-1" || log[0].Fingerprint != genuine {
		t.Errorf("signing log %+v", log)
	}
	as := ab.recorded(t)
	if len(as) != 1 || as[0].DeviceKeyID != genuine || as[0].UnitID != w.Unit || string(as[0].Text) != ans {
		t.Errorf("recorded: %s", records(as))
	}
	if c, r, _ := w.State(); c == nil || c.DeviceKeyID != genuine || c.Window != w.ID || r != nil {
		t.Errorf("window: capture %+v, refusal %+v", c, r)
	}
	if st := ab.proxy.Stats(); st.Taken != 3 || st.Recorded != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestAttackForeignRequestID: request-ids the vault did not issue through
// this proxy, or that are spent or expired, are refused 400 invalid-nonce
// without calling the vault (even a nonce the vault itself would accept),
// and kept as the window's refusal; an empty request-id is a malformed
// request. The window is not burnt: the genuine board registers after.
func TestAttackForeignRequestID(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	other := ab.openUnit(t, "A2", "OTHER-1")
	spent := ab.requestID(t)
	if st, _, body := ab.postSerial(t, ab.stream(t, 3, spent, "OTHER-1", nil)); st != http.StatusOK {
		t.Fatalf("other board: %d %s", st, body)
	}
	w := ab.openUnit(t, "A1", "NONCE-1")
	direct := fastClient(t, ab.vaultSrv.URL+"/v1/", lineAPIKey) // an attacker holding the model's api-key
	attacker := testKeyN(t, 2).Public().ID()
	for _, tc := range []struct {
		name string
		id   func() string
	}{
		{"never issued", func() string { return bogusNonce }},
		{"issued by the vault, not through the station", func() string {
			id, err := direct.RequestID(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return id
		}},
		{"spent by another board", func() string { return spent }},
		{"expired", func() string {
			id := ab.requestID(t)
			ab.clock.advance(601 * time.Second)
			return id
		}},
		{"oversized", func() string { return strings.Repeat("f", 4096) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ab.vault.Requests("/v1/serial")
			st, ct, body := ab.postSerial(t, ab.stream(t, 2, tc.id(), "NONCE-1", nil))
			wantCode(t, tc.name, st, body, http.StatusBadRequest, "invalid-nonce")
			if ct != "application/json; charset=UTF-8" {
				t.Errorf("content type %q", ct)
			}
			if n := ab.vault.Requests("/v1/serial") - before; n != 0 {
				t.Errorf("the vault was called %d times", n)
			}
			c, r, _ := w.State()
			if c != nil || r == nil || r.By != serialvault.RefusedByStation || r.Code != "invalid-nonce" ||
				r.Serial != "NONCE-1" || r.DeviceKeyID != attacker || r.Unit != w.Unit {
				t.Errorf("window: capture %+v, refusal %+v", c, r)
			}
		})
	}
	t.Run("empty", func(t *testing.T) {
		before := ab.vault.Requests("/v1/serial")
		_, r0, _ := w.State()
		st, _, body := ab.postSerial(t, ab.stream(t, 2, "", "NONCE-1", nil))
		wantCode(t, "empty request-id", st, body, http.StatusBadRequest, "invalid-assertion")
		if n := ab.vault.Requests("/v1/serial") - before; n != 0 {
			t.Errorf("the vault was called %d times", n)
		}
		if _, r, _ := w.State(); r != r0 {
			t.Errorf("a malformed request changed the window's refusal to %+v", r)
		}
	})
	if log := ab.vault.SigningLog(); len(log) != 1 {
		t.Errorf("signing log %+v, want OTHER-1's only", log)
	}
	if c, _, _ := other.State(); c == nil || c.Serial != "OTHER-1" {
		t.Errorf("OTHER-1: %+v", c)
	}
	// The genuine board, with a request-id issued through the station.
	ab.clock.advance(-601 * time.Second)
	st, _, ans := ab.postSerial(t, ab.stream(t, 1, ab.requestID(t), "NONCE-1", nil))
	if st != http.StatusOK {
		t.Fatalf("genuine board after the attack: %d %s", st, ans)
	}
	if c, _, _ := w.State(); c == nil || c.DeviceKeyID != testKeyN(t, 1).Public().ID() {
		t.Errorf("NONCE-1's capture %+v", c)
	}
	if n := len(ab.recorded(t)); n != 2 {
		t.Errorf("%d recorded, want 2", n)
	}
	if st := ab.proxy.Stats(); st.BadNonce != 5 {
		t.Errorf("stats %+v", st)
	}
}

// TestAttackIdenticalCopies: 8 concurrent copies of one genuine request
// (an attacker replaying what it sniffed, or snapd's resend) are served
// once: the vault is called and signs once, all 8 get 200 with the same
// bytes, one record, and the window keeps no refusal.
func TestAttackIdenticalCopies(t *testing.T) {
	ab := newAttackBench(t, attackOpt{gate: true})
	w := ab.openUnit(t, "A1", "COPY-1")
	body := ab.stream(t, 1, ab.requestID(t), "COPY-1", nil)
	replies := make(chan reply, 8)
	for range 8 {
		go func() { replies <- ab.send(context.Background(), "/v1/serial", body, nil) }()
	}
	// All 8 bodies are in the proxy while the first is at the vault.
	ab.ev.await(t, 8, "serial body read")
	ab.ev.await(t, 1, "vault answered")
	ab.gate.open()
	var first string
	for i := range 8 {
		r := awaitReply(t, replies)
		if r.err != nil || r.status != http.StatusOK || r.header.Get("Content-Type") != serialvault.AssertionType {
			t.Errorf("copy %d: %d %v %s", i, r.status, r.err, r.body)
			continue
		}
		if first == "" {
			first = r.body
		} else if r.body != first {
			t.Errorf("copy %d got other bytes", i)
		}
	}
	if n := ab.vault.Requests("/v1/serial"); n != 1 {
		t.Errorf("%d serial requests reached the vault, want 1", n)
	}
	if log := ab.vault.SigningLog(); len(log) != 1 {
		t.Errorf("signing log %+v", log)
	}
	if as := ab.recorded(t); len(as) != 1 || string(as[0].Text) != first || as[0].UnitID != w.Unit {
		t.Errorf("recorded: %s", records(as))
	}
	if c, r, _ := w.State(); c == nil || r != nil {
		t.Errorf("window: capture %+v, refusal %+v", c, r)
	}
	if st := ab.proxy.Stats(); st.Recorded != 1 || st.Replayed != 7 || st.Busy != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestAttackConcurrentIdentities: four different device keys, each with
// its own genuine request-id, race for one window: the vault is called and
// signs once, exactly one gets 200, the others 409, and the window's one
// identity is the winner's.
func TestAttackConcurrentIdentities(t *testing.T) {
	ab := newAttackBench(t, attackOpt{gate: true})
	w := ab.openUnit(t, "A1", "RACE-1")
	replies := make(chan reply, 4)
	keyOf := map[string]string{}
	for key := range 4 {
		body := ab.stream(t, key, ab.requestID(t), "RACE-1", nil)
		keyOf[string(body)] = testKeyN(t, key).Public().ID()
		go func() { replies <- ab.send(context.Background(), "/v1/serial", body, nil) }()
	}
	ab.ev.await(t, 4, "serial body read")
	ab.ev.await(t, 1, "vault answered")
	ab.gate.open()
	var won []reply
	for range 4 {
		r := awaitReply(t, replies)
		switch {
		case r.err != nil:
			t.Error(r.err)
		case r.status == http.StatusOK:
			won = append(won, r)
		default:
			wantCode(t, "loser", r.status, r.body, http.StatusConflict, "identity-taken")
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d requests got an identity, want 1", len(won))
	}
	if n := ab.vault.Requests("/v1/serial"); n != 1 {
		t.Errorf("%d serial requests reached the vault, want 1", n)
	}
	log := ab.vault.SigningLog()
	as := ab.recorded(t)
	c, r, _ := w.State()
	if len(log) != 1 || len(as) != 1 || c == nil || r != nil {
		t.Fatalf("signing log %+v, recorded %d, window capture %+v refusal %+v", log, len(as), c, r)
	}
	if string(as[0].Text) != won[0].body || as[0].UnitID != w.Unit || c.DeviceKeyID != as[0].DeviceKeyID ||
		log[0].Fingerprint != as[0].DeviceKeyID {
		t.Errorf("the winner's identity differs: log %+v, %s, capture key %s", log[0], records(as), c.DeviceKeyID)
	}
	if st := ab.proxy.Stats(); st.Taken != 3 {
		t.Errorf("stats %+v", st)
	}
}

// allocated runs f and returns the bytes the process allocated meanwhile.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestAttackOversizedBody: a body over 64 KiB is refused 413 (and the
// connection closed) without calling the vault; 64 KiB exactly is read.
func TestAttackOversizedBody(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	w := ab.openUnit(t, "A1", "BIG-1")
	stream := ab.stream(t, 1, ab.requestID(t), "BIG-1", nil)
	over := append(append([]byte(nil), stream...), bytes.Repeat([]byte("x"), serialvault.MaxRequestBody+1-len(stream))...)
	r := ab.send(context.Background(), "/v1/serial", over, nil)
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantCode(t, "64 KiB + 1", r.status, r.body, http.StatusRequestEntityTooLarge, "invalid-request")
	if !r.close {
		t.Error("the connection stays open after 413")
	}
	st, _, body := ab.postSerial(t, over[:serialvault.MaxRequestBody])
	wantCode(t, "64 KiB", st, body, http.StatusBadRequest, "invalid-assertion")
	wantVaultUntouched(t, ab.bench, 0)
	wantEmptyWindow(t, "BIG-1", w)
	if n := len(ab.recorded(t)); n != 0 {
		t.Errorf("%d recorded", n)
	}
}

// TestAttackDeepBody: a signed serial-request whose 60 KiB registration
// body nests 30000 levels deep (and a stream that is nothing but nesting)
// costs a scan, not a YAML decode: little memory, and no vault call
// whether no window expects its serial or its request-id is foreign (or
// the proxy refuses the nesting itself, 400 invalid-request).
func TestAttackDeepBody(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	w := ab.openUnit(t, "A1", "DEEP-2")
	deep := strings.Repeat("[", 30000) + strings.Repeat("]", 30000)
	for _, tc := range []struct {
		name, nonce string
		body        string
		raw         bool // the stream itself is the nesting
		status      int
		code        string
	}{
		{"no window expects it", "", "serial: DEEP-1\nx: " + deep + "\n", false, http.StatusForbidden, "no-window"},
		{"nesting before the serial", "", "x: " + deep + "\nserial: DEEP-1\n", false, http.StatusForbidden, "no-window"},
		{"foreign request-id", bogusNonce, "serial: DEEP-2\nx: " + deep + "\n", false, http.StatusBadRequest, "invalid-nonce"},
		{"flow mapping nesting", bogusNonce, "serial: DEEP-2\nx: " + strings.Repeat("{a: ", 15000) + "\n", false, http.StatusBadRequest, "invalid-nonce"},
		{"the stream is nesting", "", strings.Repeat("[", 60<<10), true, http.StatusBadRequest, "invalid-assertion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := []byte(tc.body)
			if !tc.raw {
				nonce := tc.nonce
				if nonce == "" {
					nonce = ab.requestID(t)
				}
				stream = ab.stream(t, 2, nonce, "", []byte(tc.body))
			}
			if len(stream) > serialvault.MaxRequestBody || len(stream) < 58<<10 {
				t.Fatalf("stream of %d bytes", len(stream))
			}
			var st int
			var body string
			n := allocated(func() { st, _, body = ab.postSerial(t, stream) })
			// A proxy that bounds a body's nesting refuses it first.
			if st != http.StatusBadRequest || !strings.Contains(body, `"error_code":"invalid-request"`) {
				wantCode(t, tc.name, st, body, tc.status, tc.code)
			}
			// A full YAML decode of such a body took the station to 670 MB.
			if n > 16<<20 {
				t.Errorf("serving a %d-byte deep request allocated %d MiB", len(stream), n>>20)
			}
		})
	}
	wantVaultUntouched(t, ab.bench, 0)
	if n := len(ab.recorded(t)); n != 0 {
		t.Errorf("%d recorded", n)
	}
	if c, _, _ := w.State(); c != nil {
		t.Errorf("DEEP-2 got %+v", c)
	}
}

// readCounter counts reads of a request body.
type readCounter struct {
	io.Reader
	reads atomic.Int32
}

func (r *readCounter) Read(p []byte) (int, error) {
	r.reads.Add(1)
	return r.Reader.Read(p)
}

// TestAttackOutsideAllow: with proxy.allow 10.0.0.0/8 a loopback caller is
// refused 403 before the proxy reads a byte of its body, on both
// endpoints, whatever X-Forwarded-For, X-Real-IP or Forwarded claim; the
// vault is never called. With an empty allow only loopback may call, and
// forwarding headers do not make a bench address loopback.
func TestAttackOutsideAllow(t *testing.T) {
	ab := newAttackBench(t, attackOpt{allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	w := ab.openUnit(t, "A1", "ALLOW-1")
	spoof := http.Header{
		"X-Forwarded-For": {"10.1.2.3"}, "X-Real-Ip": {"10.1.2.3"}, "Forwarded": {"for=10.1.2.3"},
	}
	for _, p := range []string{"/v1/request-id", "/v1/serial"} {
		for _, hdr := range []http.Header{nil, spoof} {
			r := ab.send(context.Background(), p, ab.stream(t, 1, bogusNonce, "ALLOW-1", nil), hdr)
			if r.err != nil {
				t.Fatal(r.err)
			}
			wantCode(t, fmt.Sprintf("loopback %s (spoofed: %v)", p, hdr != nil), r.status, r.body, http.StatusForbidden, "forbidden")
		}
	}
	if n := ab.vault.Requests("/v1/request-id") + ab.vault.Requests("/v1/serial"); n != 0 {
		t.Errorf("%d requests reached the vault", n)
	}
	if n := ab.ev.count("serial body read"); n != 0 {
		t.Errorf("the proxy read %d bodies of callers outside allow", n)
	}
	wantEmptyWindow(t, "ALLOW-1", w)
	if st := ab.proxy.Stats(); st.Forbidden != 4 {
		t.Errorf("stats %+v", st)
	}

	// Straight into the handler: no read of the body at all; the bench
	// address passes.
	direct := func(p *serialvault.Proxy, remote string, hdr http.Header) (int, int32) {
		body := &readCounter{Reader: bytes.NewReader(ab.stream(t, 1, bogusNonce, "ALLOW-1", nil))}
		req := httptest.NewRequest(http.MethodPost, "/v1/serial", body)
		req.RemoteAddr = remote
		for k, vs := range hdr {
			req.Header[k] = vs
		}
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		return rec.Code, body.reads.Load()
	}
	for _, remote := range []string{"127.0.0.1:40000", "[::1]:40000", "11.0.0.1:40000", "[fe80::1%eth0]:40000", "not-an-address"} {
		if st, reads := direct(ab.proxy, remote, spoof); st != http.StatusForbidden || reads != 0 {
			t.Errorf("%s: %d after %d body reads; want 403 before any", remote, st, reads)
		}
	}
	for _, remote := range []string{"10.1.2.3:40000", "[::ffff:10.1.2.3]:40000"} {
		if st, reads := direct(ab.proxy, remote, nil); st != http.StatusBadRequest || reads == 0 { // the foreign nonce
			t.Errorf("%s: %d after %d body reads; want the request served (400 invalid-nonce)", remote, st, reads)
		}
	}

	// Empty allow: loopback only.
	lo := newAttackBench(t, attackOpt{})
	lo.openUnit(t, "A1", "ALLOW-1")
	for _, remote := range []string{"10.1.2.3:40000", "192.168.1.5:40000"} {
		if st, reads := direct(lo.proxy, remote, http.Header{"X-Forwarded-For": {"127.0.0.1"}}); st != http.StatusForbidden || reads != 0 {
			t.Errorf("empty allow, %s: %d after %d reads", remote, st, reads)
		}
	}
	for _, remote := range []string{"127.0.0.1:40000", "[::1]:40000", "[::ffff:127.0.0.1]:40000"} {
		if st, _ := direct(lo.proxy, remote, nil); st != http.StatusBadRequest {
			t.Errorf("empty allow, %s: %d; want the request served (400 invalid-nonce)", remote, st)
		}
	}
}

// TestAttackWindowClosesDuringVaultCall: the unit ends (its window closes)
// while the vault signs its board's request, and the next unit opens a
// window for the same serial (a re-flash; on an unpredicted line, the one
// open window). The signed serial is still recorded, never lost, as a
// serial without a unit (Capture.Window 0, stats Unbound), and never bound
// to the later window, not even by a replay.
func TestAttackWindowClosesDuringVaultCall(t *testing.T) {
	for _, unpredicted := range []bool{false, true} {
		t.Run(fmt.Sprintf("unpredicted=%v", unpredicted), func(t *testing.T) {
			ab := newAttackBench(t, attackOpt{gate: true, unpredicted: unpredicted})
			w := ab.openUnit(t, "A1", "LATE-1")
			body := ab.stream(t, 1, ab.requestID(t), "LATE-1", nil)
			replies := make(chan reply, 1)
			go func() { replies <- ab.send(context.Background(), "/v1/serial", body, nil) }()
			ab.ev.await(t, 1, "vault answered")
			if c, r := w.Close(); c != nil || r != nil {
				t.Errorf("closed window: %+v %+v", c, r)
			}
			later := ab.openUnit(t, "A1", "LATE-1")
			ab.gate.open()
			r := awaitReply(t, replies)
			if r.err != nil || r.status != http.StatusOK {
				t.Fatalf("board: %d %v %s", r.status, r.err, r.body)
			}
			as := ab.recorded(t)
			if len(as) != 1 || as[0].Serial != "LATE-1" || as[0].UnitID != 0 || string(as[0].Text) != r.body {
				t.Errorf("recorded: %s", records(as))
			}
			if cs := ab.capturesSeen(); len(cs) != 1 || cs[0].Window != 0 || cs[0].Unit != 0 || cs[0].Slot != "" || cs[0].AssertionID != as[0].ID {
				t.Errorf("captures %+v", cs)
			}
			if st := ab.proxy.Stats(); st.Unbound != 1 || st.Recorded != 1 {
				t.Errorf("stats %+v", st)
			}
			if c, _, _ := w.State(); c != nil {
				t.Errorf("the closed window got %+v", c)
			}
			// The board's resend is answered from the cache, still unbound.
			st, _, again := ab.postSerial(t, body)
			if st != http.StatusOK || again != r.body {
				t.Errorf("replay: %d", st)
			}
			wantEmptyWindow(t, "the later window", later)
			if as := ab.recorded(t); len(as) != 1 || as[0].UnitID != 0 {
				t.Errorf("after the replay: %s", records(as))
			}
			if n := len(ab.vault.SigningLog()); n != 1 {
				t.Errorf("vault signed %d", n)
			}
		})
	}
}

// TestAttackStorageDownWindowCloses: the vault signed, the ledger could not
// record (503), the unit ended, and the same serial's next unit opened: the
// board's retry records the serial it was signed, without a unit, and the
// later window never gets it.
func TestAttackStorageDownWindowCloses(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	ab.rec.failing.Store(true)
	w := ab.openUnit(t, "A1", "LOST-1")
	body := ab.stream(t, 1, ab.requestID(t), "LOST-1", nil)
	st, _, ans := ab.postSerial(t, body)
	wantCode(t, "storage down", st, ans, http.StatusServiceUnavailable, "storage-unavailable")
	if c, _ := w.Close(); c != nil {
		t.Errorf("closed with %+v", c)
	}
	later := ab.openUnit(t, "A2", "LOST-1")
	ab.rec.failing.Store(false)
	st, _, ans = ab.postSerial(t, body)
	if st != http.StatusOK {
		t.Fatalf("retry: %d %s", st, ans)
	}
	if as := ab.recorded(t); len(as) != 1 || as[0].UnitID != 0 || string(as[0].Text) != ans {
		t.Errorf("recorded: %s", records(as))
	}
	if cs := ab.capturesSeen(); len(cs) != 1 || cs[0].Window != 0 {
		t.Errorf("captures %+v", cs)
	}
	wantEmptyWindow(t, "the later window", later)
	if n := len(ab.vault.SigningLog()); n != 1 {
		t.Errorf("vault signed %d", n)
	}
}

// TestAttackRequestIDWithoutWindow: with no window open, request-id is
// refused 403 and the vault is not asked for a nonce.
func TestAttackRequestIDWithoutWindow(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	check := func(what string) {
		t.Helper()
		r := ab.send(context.Background(), "/v1/request-id", nil, nil)
		if r.err != nil {
			t.Fatal(r.err)
		}
		wantCode(t, what, r.status, r.body, http.StatusForbidden, "no-window")
	}
	check("no window ever")
	w := ab.openUnit(t, "A1", "RID-1")
	w.Close()
	check("after the window closed")
	if n := ab.vault.Requests("/v1/request-id"); n != 0 {
		t.Errorf("%d request-ids asked of the vault", n)
	}
	if st := ab.proxy.Stats(); st.NoWindow != 2 || st.RequestIDs != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestAttackUnpredictedTwoWindows: on an unpredicted line, a request while
// two windows are open is deferred 503 registration-busy with Retry-After,
// the vault not called and its nonce not spent; once one window is left,
// the same request binds to it.
func TestAttackUnpredictedTwoWindows(t *testing.T) {
	ab := newAttackBench(t, attackOpt{unpredicted: true})
	w1 := ab.openUnit(t, "A1", "HW-1")
	w2 := ab.openUnit(t, "A2", "HW-2")
	body := ab.stream(t, 1, ab.requestID(t), "ANY-1", nil)
	r := ab.send(context.Background(), "/v1/serial", body, nil)
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantCode(t, "two windows", r.status, r.body, http.StatusServiceUnavailable, "registration-busy")
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	wantVaultUntouched(t, ab.bench, 0)
	wantEmptyWindow(t, "A1", w1)
	wantEmptyWindow(t, "A2", w2)
	w2.Close()
	if st, _, ans := ab.postSerial(t, body); st != http.StatusOK {
		t.Fatalf("one window left: %d %s", st, ans)
	}
	if c, _, _ := w1.State(); c == nil || c.Window != w1.ID || c.Serial != "ANY-1" {
		t.Errorf("A1's capture %+v", c)
	}
	if as := ab.recorded(t); len(as) != 1 || as[0].UnitID != w1.Unit {
		t.Errorf("recorded: %s", records(as))
	}
}

// TestAttackHeaderBodySerialMismatch: the serial header wins over the
// body's serial key, as at the vault: a request whose body names the
// window's serial but whose header names another is refused 403 without
// a vault call (and without spending its nonce); the serial signed for it
// is the header's.
func TestAttackHeaderBodySerialMismatch(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	bodyWin := ab.openUnit(t, "A1", "BODY-1")
	stream := ab.stream(t, 1, ab.requestID(t), "HDR-1", []byte("serial: BODY-1\n"))
	st, _, ans := ab.postSerial(t, stream)
	wantCode(t, "header HDR-1, body BODY-1", st, ans, http.StatusForbidden, "no-window")
	wantVaultUntouched(t, ab.bench, 0)
	wantEmptyWindow(t, "BODY-1", bodyWin)
	hdrWin := ab.openUnit(t, "A2", "HDR-1")
	st, _, ans = ab.postSerial(t, stream)
	if st != http.StatusOK {
		t.Fatalf("HDR-1 window open: %d %s", st, ans)
	}
	if log := ab.vault.SigningLog(); len(log) != 1 || log[0].SerialNumber != "HDR-1" {
		t.Errorf("signing log %+v", log)
	}
	if c, _, _ := hdrWin.State(); c == nil || c.Serial != "HDR-1" {
		t.Errorf("HDR-1's capture %+v", c)
	}
	wantEmptyWindow(t, "BODY-1", bodyWin)
}

// TestAttackBodyLineBreakSmuggling: the body's serial must be the one the
// vault reads (gopkg.in/yaml.v2 into a map, errors ignored, the last of
// duplicate keys winning). YAML breaks lines at CR, NEL, LS and PS too, and
// a first key that is indented makes the top level indented: the proxy
// must refuse such bodies, not forward a request for GOOD whose body the
// vault reads as EVIL (the vault double, go-yaml, reads EVIL-n from the
// indented ones; gopkg.in/yaml.v2 reads EVIL-n from all of them).
func TestAttackBodyLineBreakSmuggling(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	for i, tc := range []struct{ name, body string }{
		{"carriage return", "serial: GOOD-%d #\rserial: EVIL-%[1]d\n"},
		{"next line", "serial: GOOD-%d #\u0085serial: EVIL-%[1]d\n"},
		{"line separator", "serial: GOOD-%d #\u2028serial: EVIL-%[1]d\n"},
		{"paragraph separator", "serial: GOOD-%d #\u2029serial: EVIL-%[1]d\n"},
		{"indented top level", "  x: 'a\nserial: GOOD-%d\ny: c\n  b'\n  serial: EVIL-%[1]d\n"},
		{"indented top level, double quotes", "  x: \"a\nserial: GOOD-%d\ny: c\n  b\"\n  serial: EVIL-%[1]d\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := fmt.Sprintf("GOOD-%d", i)
			w := ab.openUnit(t, "A1", good)
			body := fmt.Sprintf(tc.body, i)
			if s, err := serialvault.ScanBodySerial([]byte(body)); err == nil {
				t.Errorf("ScanBodySerial(%q) = %q, want an error", body, s)
			}
			before, signed := ab.vault.Requests("/v1/serial"), len(ab.vault.SigningLog())
			st, _, ans := ab.postSerial(t, ab.stream(t, 2, ab.requestID(t), "", []byte(body)))
			wantCode(t, "smuggled serial", st, ans, http.StatusBadRequest, "invalid-serial")
			if n := ab.vault.Requests("/v1/serial") - before; n != 0 {
				t.Errorf("the request reached the vault (%d)", n)
			}
			for _, e := range ab.vault.SigningLog()[signed:] {
				t.Errorf("the vault signed %s for a body the station read as proposing %s", e.SerialNumber, good)
			}
			w.Close()
		})
	}
	if n := len(ab.recorded(t)); n != 0 {
		t.Errorf("%d recorded", n)
	}
}

// TestAttackReplayAfterWindowClosed: a copy of a recorded request sent
// after its window closed, while the same serial's next window is open,
// gets the cached answer (the same bytes, no vault call) and changes
// nothing: the record stays its unit's, the later window stays empty.
func TestAttackReplayAfterWindowClosed(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	w := ab.openUnit(t, "A1", "REPLAY-1")
	body := ab.stream(t, 1, ab.requestID(t), "REPLAY-1", nil)
	st, _, ans := ab.postSerial(t, body)
	if st != http.StatusOK {
		t.Fatalf("%d %s", st, ans)
	}
	w.Close()
	later := ab.openUnit(t, "A2", "REPLAY-1")
	for range 3 {
		if st, _, again := ab.postSerial(t, body); st != http.StatusOK || again != ans {
			t.Errorf("replay: %d, same bytes %v", st, again == ans)
		}
	}
	if n := ab.vault.Requests("/v1/serial"); n != 1 {
		t.Errorf("%d serial requests reached the vault", n)
	}
	if as := ab.recorded(t); len(as) != 1 || as[0].UnitID != w.Unit {
		t.Errorf("recorded: %s", records(as))
	}
	wantEmptyWindow(t, "the later window", later)
	if cs := ab.capturesSeen(); len(cs) != 1 || cs[0].Window != w.ID {
		t.Errorf("captures %+v", cs)
	}
	if st := ab.proxy.Stats(); st.Replayed != 3 || st.Recorded != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestAttackSecondIdentityAfterStorageFailure: the vault signed the
// genuine board's serial but the ledger could not record it (503; the
// signed answer waits in the cache for the board's retry). An attacker
// asking for the same window with its own key and a fresh request-id must
// not get a second signature: the window's identity is the one the vault
// signed. The board's retry then records its serial, bound to its unit.
func TestAttackSecondIdentityAfterStorageFailure(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	w := ab.openUnit(t, "A1", "STORE-2")
	ab.rec.failing.Store(true)
	genuine := ab.stream(t, 1, ab.requestID(t), "STORE-2", nil)
	st, _, ans := ab.postSerial(t, genuine)
	wantCode(t, "storage down", st, ans, http.StatusServiceUnavailable, "storage-unavailable")
	ab.rec.failing.Store(false)
	st, _, ans = ab.postSerial(t, ab.stream(t, 2, ab.requestID(t), "STORE-2", nil))
	wantCode(t, "attacker after the storage failure", st, ans, http.StatusConflict, "identity-taken")
	if log := ab.vault.SigningLog(); len(log) != 1 {
		t.Errorf("the vault signed %d serials for one window: %+v", len(log), log)
	}
	st, _, ans = ab.postSerial(t, genuine)
	if st != http.StatusOK {
		t.Fatalf("the board's retry: %d %s", st, ans)
	}
	key := testKeyN(t, 1).Public().ID()
	as := ab.recorded(t)
	if len(as) != 1 || as[0].DeviceKeyID != key || as[0].UnitID != w.Unit || string(as[0].Text) != ans {
		t.Errorf("recorded: %s; want the board's serial only, bound to unit %d", records(as), w.Unit)
	}
	if c, _, _ := w.State(); c == nil || c.DeviceKeyID != key {
		t.Errorf("window capture %+v; want the board's", c)
	}
}

// TestAttackCachedAnswerOutlivesTTL: storage is down longer than the
// answer cache's 30 minutes; the board's retry must still get (and the
// station record) the serial the vault signed for it, not a refusal for
// its spent nonce that leaves the signature unrecorded.
func TestAttackCachedAnswerOutlivesTTL(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	w := ab.openUnit(t, "A1", "TTL-1")
	ab.rec.failing.Store(true)
	body := ab.stream(t, 1, ab.requestID(t), "TTL-1", nil)
	st, _, ans := ab.postSerial(t, body)
	wantCode(t, "storage down", st, ans, http.StatusServiceUnavailable, "storage-unavailable")
	ab.clock.advance(31 * time.Minute)
	ab.rec.failing.Store(false)
	st, _, ans = ab.postSerial(t, body)
	if st != http.StatusOK {
		t.Errorf("the board's retry after 31 minutes: %d %s", st, strings.TrimSpace(ans))
	}
	log, as := ab.vault.SigningLog(), ab.recorded(t)
	if len(log) != len(as) {
		t.Errorf("the vault signed %d serials, the station recorded %d", len(log), len(as))
	}
	if c, _, _ := w.State(); c == nil {
		t.Error("the window has no identity")
	}
}

// TestAttackDeviceLeavesDuringVaultCall: the caller hangs up while the
// vault signs its request (a board's HTTP timeout, a reboot, or an
// attacker holding a sniffed request). The serial the vault signed must
// still be recorded and bound: the vault call and the ledger write must
// not end with the device's connection. The board's resend is then
// answered from the record.
func TestAttackDeviceLeavesDuringVaultCall(t *testing.T) {
	ab := newAttackBench(t, attackOpt{gate: true})
	w := ab.openUnit(t, "A1", "LEAVE-1")
	body := ab.stream(t, 1, ab.requestID(t), "LEAVE-1", nil)
	ctx, cancel := context.WithCancel(context.Background())
	replies := make(chan reply, 1)
	go func() { replies <- ab.send(ctx, "/v1/serial", body, nil) }()
	ab.ev.await(t, 1, "vault answered") // the vault has signed
	cancel()
	if r := awaitReply(t, replies); r.err == nil {
		t.Fatalf("the caller got %d after hanging up", r.status)
	}
	ab.ev.await(t, 1, "serial caller gone", "serial served") // the proxy knows
	ab.gate.open()
	ab.ev.await(t, 1, "serial served")
	if n := ab.ev.count("vault abandoned"); n != 0 {
		t.Errorf("the proxy abandoned %d vault calls with their callers", n)
	}
	log, as := ab.vault.SigningLog(), ab.recorded(t)
	if len(log) != 1 || len(as) != 1 {
		t.Fatalf("the vault signed %d serials, the station recorded %d: a signed serial was lost", len(log), len(as))
	}
	if as[0].UnitID != w.Unit {
		t.Errorf("recorded: %s", records(as))
	}
	if c, _, _ := w.State(); c == nil || c.Window != w.ID {
		t.Errorf("window capture %+v", c)
	}
	st, _, ans := ab.postSerial(t, body)
	if st != http.StatusOK || ans != string(as[0].Text) {
		t.Errorf("the board's resend: %d %s", st, ans)
	}
	if n := ab.vault.Requests("/v1/serial"); n != 1 {
		t.Errorf("%d serial requests reached the vault", n)
	}
}

// TestAttackCallersLeaveWhileWaiting: callers that hang up while waiting
// for an identical request (lockRequest) or for the window's vault call
// (its busy token) are let go at once, while the first request is still at
// the vault: no handler outlives its caller. The first one is unaffected.
func TestAttackCallersLeaveWhileWaiting(t *testing.T) {
	ab := newAttackBench(t, attackOpt{gate: true})
	w := ab.openUnit(t, "A1", "WAIT-1")
	body := ab.stream(t, 1, ab.requestID(t), "WAIT-1", nil)
	other := ab.stream(t, 2, ab.requestID(t), "WAIT-1", nil)
	first := make(chan reply, 1)
	go func() { first <- ab.send(context.Background(), "/v1/serial", body, nil) }()
	ab.ev.await(t, 1, "vault answered")
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan reply, 2)
	go func() { waiting <- ab.send(ctx, "/v1/serial", body, nil) }()  // waits for the identical request
	go func() { waiting <- ab.send(ctx, "/v1/serial", other, nil) }() // waits for the window
	ab.ev.await(t, 3, "serial body read")
	cancel()
	for range 2 {
		if r := awaitReply(t, waiting); r.err == nil {
			t.Errorf("a caller got %d after hanging up", r.status)
		}
	}
	ab.answers.await(t, 2, "answers to the callers that left", func(a answer) bool { return a.status == http.StatusServiceUnavailable })
	ab.ev.await(t, 2, "serial served")
	if n := ab.ev.count("serial served"); n != 2 {
		t.Errorf("%d serial requests served, want the 2 that left", n)
	}
	ab.gate.open()
	if r := awaitReply(t, first); r.err != nil || r.status != http.StatusOK {
		t.Fatalf("first: %d %v %s", r.status, r.err, r.body)
	}
	if log := ab.vault.SigningLog(); len(log) != 1 || log[0].Fingerprint != testKeyN(t, 1).Public().ID() {
		t.Errorf("signing log %+v", log)
	}
	if c, r, _ := w.State(); c == nil || c.DeviceKeyID != testKeyN(t, 1).Public().ID() || r != nil {
		t.Errorf("window: %+v %+v", c, r)
	}
}

// TestAttackCloseWhileRecording: a window closed while its serial is being
// written waits for the write and returns the serial: the unit and the
// ledger agree.
func TestAttackCloseWhileRecording(t *testing.T) {
	ab := newAttackBench(t, attackOpt{})
	ab.rec.called = make(chan struct{}, 1)
	ab.rec.gate = make(chan struct{})
	w := ab.openUnit(t, "A1", "CLOSE-1")
	body := ab.stream(t, 1, ab.requestID(t), "CLOSE-1", nil)
	replies := make(chan reply, 1)
	go func() { replies <- ab.send(context.Background(), "/v1/serial", body, nil) }()
	select {
	case <-ab.rec.called:
	case <-time.After(ceiling):
		t.Fatal("never recorded")
	}
	closed := make(chan *serialvault.Capture, 1)
	go func() { c, _ := w.Close(); closed <- c }()
	close(ab.rec.gate)
	var c *serialvault.Capture
	select {
	case c = <-closed:
	case <-time.After(ceiling):
		t.Fatal("Close never returned")
	}
	if r := awaitReply(t, replies); r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	as := ab.recorded(t)
	if c == nil || c.Window != w.ID || len(as) != 1 || as[0].UnitID != w.Unit || c.AssertionID != as[0].ID {
		t.Errorf("Close returned %+v; recorded: %s", c, records(as))
	}
}

// TestAttackCloseBindRace races Close with requests (run with -race):
// Close lands as the proxy starts on the request (before it matches, or
// during its vault call), as the vault answers (around the bind), or while
// the serial is written, a few scheduler turns later each round. Close
// returns the serial bound to the window or nil, and the ledger, the
// captures and the window's later state say the same; every serial the
// vault signed is recorded once.
func TestAttackCloseBindRace(t *testing.T) {
	ab := newAttackBench(t, attackOpt{gate: true})
	ab.gate.open() // the gate only reports the vault's answers
	ab.rec.called = make(chan struct{}, 64)
	const n = 18
	outcomes := map[string]int{}
	for i := range n {
		serial := fmt.Sprintf("CB-%d", i)
		w := ab.openUnit(t, "A1", serial)
		body := ab.stream(t, 1+i%3, ab.requestID(t), serial, nil)
		for len(ab.rec.called) > 0 {
			<-ab.rec.called
		}
		read, answered := ab.ev.count("serial body read"), ab.ev.count("vault answered")
		replies := make(chan reply, 1)
		go func() { replies <- ab.send(context.Background(), "/v1/serial", body, nil) }()
		switch i % 3 {
		case 0:
			ab.ev.await(t, read+1, "serial body read")
		case 1:
			ab.ev.await(t, answered+1, "vault answered")
		case 2:
			select {
			case <-ab.rec.called:
			case <-time.After(ceiling):
				t.Fatal("never recorded")
			}
		}
		for range (i / 3) * 30 {
			runtime.Gosched()
		}
		c, _ := w.Close()
		r := awaitReply(t, replies)
		if later, _, _ := w.State(); later != c {
			t.Errorf("%s: Close returned %+v, the window later holds %+v", serial, c, later)
		}
		as, err := ab.led.SerialAssertions(context.Background(), ledger.AssertionFilter{Serial: serial})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case r.err != nil:
		case r.status != http.StatusOK:
			outcomes[fmt.Sprint(r.status)]++
		case c != nil:
			outcomes["bound"]++
		default:
			outcomes["unbound"]++
		}
		switch {
		case r.err != nil:
			t.Fatal(r.err)
		case r.status == http.StatusForbidden: // closed before the request matched
			if c != nil || len(as) != 0 {
				t.Errorf("%s: 403 but capture %+v, %s", serial, c, records(as))
			}
		case r.status == http.StatusOK:
			if len(as) != 1 || string(as[0].Text) != r.body {
				t.Fatalf("%s: %s", serial, records(as))
			}
			if c != nil && (c.Window != w.ID || as[0].UnitID != w.Unit) || c == nil && as[0].UnitID != 0 {
				t.Errorf("%s: Close returned %+v, the ledger's unit is %d", serial, c, as[0].UnitID)
			}
			if i%3 == 2 && c == nil {
				t.Errorf("%s: closed while its serial was written, Close did not wait for it", serial)
			}
		default:
			t.Errorf("%s: %d %s", serial, r.status, brief(r.body))
		}
	}
	t.Logf("outcomes: %v", outcomes)
	if log, as := ab.vault.SigningLog(), ab.recorded(t); len(log) != len(as) {
		t.Errorf("the vault signed %d, the station recorded %d", len(log), len(as))
	}
	for _, c := range ab.capturesSeen() {
		if c.Window != 0 && c.Unit == 0 {
			t.Errorf("capture %+v", c)
		}
	}
}

// TestAttackMaxConcurrent: past MaxConcurrent requests at once, callers get
// 503 busy with Retry-After and the vault is not called for them.
func TestAttackMaxConcurrent(t *testing.T) {
	ab := newAttackBench(t, attackOpt{gate: true, maxConcurrent: 1})
	ab.openUnit(t, "A1", "MAX-1")
	body := ab.stream(t, 1, ab.requestID(t), "MAX-1", nil)
	first := make(chan reply, 1)
	go func() { first <- ab.send(context.Background(), "/v1/serial", body, nil) }()
	ab.ev.await(t, 1, "vault answered")
	for _, p := range []string{"/v1/request-id", "/v1/serial"} {
		r := ab.send(context.Background(), p, ab.stream(t, 2, bogusNonce, "MAX-1", nil), nil)
		wantCode(t, p, r.status, r.body, http.StatusServiceUnavailable, "busy")
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", p)
		}
	}
	ab.gate.open()
	if r := awaitReply(t, first); r.status != http.StatusOK {
		t.Fatalf("first: %d %s", r.status, r.body)
	}
	if n := ab.vault.Requests("/v1/serial"); n != 1 {
		t.Errorf("%d serial requests reached the vault", n)
	}
	if n := ab.vault.Requests("/v1/request-id"); n != 1 {
		t.Errorf("%d request-ids asked of the vault", n)
	}
}
