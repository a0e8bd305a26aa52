package lines_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
	"github.com/flashstation/flashstation/sim"
)

// The attacks of issue 12, each played against a simulated bench: a peer on
// the bench network talks to line1's recording proxy like snapd, with its
// own device key. Each test checks what the vault double signed and the
// slot's verdict.

// attackBench is a bench of one UMS board in A1 on the proxy line (its
// fastboot twin B1 disabled), the board's registration held until release.
type attackBench struct {
	*e2e
	w       *watcher
	release func()
	stop    func()
	model   *serialvault.Assertion
}

func newAttackBench(t *testing.T, cfg sim.BenchConfig, o benchOpt) *attackBench {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	if cfg.Boards == 0 {
		cfg.Boards = 2
	}
	if cfg.Speed == 0 {
		cfg.Speed = 100
	}
	if cfg.FaultsOf == nil {
		cfg.FaultsOf = func(i int) sim.Faults { return sim.Faults{HoldRegistration: gate} }
	}
	e := startBenchWith(t, cfg, 0, o)
	for _, s := range e.st.Slots {
		if s.Line != sim.LineUMS {
			if err := e.p.SetDisabled(s.ID, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	data, err := os.ReadFile(e.st.Lines[0].Model)
	if err != nil {
		t.Fatal(err)
	}
	model, err := serialvault.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	a := &attackBench{e2e: e, w: watch(e.p), release: func() { once.Do(func() { close(gate) }) }, model: model}
	t.Cleanup(a.release)
	return a
}

func (a *attackBench) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.p.Run(ctx); close(done) }()
	a.stop = func() { cancel(); <-done }
	t.Cleanup(a.stop)
}

// proxyURL is line1's recording proxy, as a gadget's device-service.url.
func (a *attackBench) proxyURL(t *testing.T) string {
	for _, h := range a.p.Health() {
		if h.Line == sim.LineUMS && h.Proxy != "" {
			return "http://" + h.Proxy + "/v1/"
		}
	}
	t.Fatal("line1 has no proxy")
	return ""
}

// attacker is a snapd-like client with its own device key.
func (a *attackBench) attacker(t *testing.T, serial string, key int) *vaulttest.Device {
	return &vaulttest.Device{Key: vaulttest.TestKey(key), Model: a.model, Serial: serial, URL: a.proxyURL(t), MaxFailures: 1,
		RetryWait: time.Millisecond, NoNetworkWait: time.Millisecond, PollWait: time.Millisecond, FailWait: time.Millisecond}
}

// post sends one serial request body to the proxy and returns its status
// and answer.
func (a *attackBench) post(t *testing.T, client *http.Client, path string, body []byte) (int, []byte) {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Post(a.proxyURL(t)+path, serialvault.AssertionType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// stream is a serial request of key for serial with a request-id.
func (a *attackBench) stream(t *testing.T, key int, requestID, serial string, body []byte) []byte {
	req, err := serialvault.NewSerialRequest(vaulttest.TestKey(key), sim.BrandID, sim.ModelName, requestID, serial, body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return append(append(req.Encode(), '\n'), a.model.Encode()...)
}

// requestID gets a fresh request-id through the proxy.
func (a *attackBench) requestID(t *testing.T) string {
	c, err := serialvault.NewClient(a.proxyURL(t), serialvault.ClientOptions{Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.RequestID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// awaitStage waits for a slot's boot stage (its window is open from the
// boot trigger on).
func (a *attackBench) awaitStage(t *testing.T, slot, stage string) {
	t.Helper()
	a.w.await(t, 0, slot+" "+stage, func(ev lines.Event) bool {
		return ev.Kind == lines.EventStage && ev.Slot == slot && ev.Stage == stage
	})
}

func (a *attackBench) verdict(t *testing.T, slot string) lines.Event {
	t.Helper()
	v, _ := a.w.await(t, 0, slot+"'s verdict", verdictOf(slot))
	return v
}

// signed is what the vault signed: serial and device key of each row.
func (a *attackBench) signed() []string {
	var out []string
	for _, e := range a.bench.Vault.SigningLog() {
		out = append(out, e.SerialNumber+" "+e.Fingerprint)
	}
	return out
}

// unitKey is the device key of the serial assertion linked to a unit.
func (a *attackBench) unitAssertions(t *testing.T, unit int64) []ledger.SerialAssertion {
	t.Helper()
	as, err := a.led.SerialAssertions(context.Background(), ledger.AssertionFilter{UnitID: unit})
	if err != nil {
		t.Fatal(err)
	}
	return as
}

func keyID(i int) string { return vaulttest.TestKey(i).Public().ID() }

func wantStatus(t *testing.T, what string, err error, status int) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("status %d", status)) {
		t.Errorf("%s: %v, want HTTP %d", what, err, status)
	}
}

// TestAttackUnknownSerial: a serial no board of the bench expects gets 403;
// the vault never sees it, and the bench's board registers as usual.
func TestAttackUnknownSerial(t *testing.T) {
	a := newAttackBench(t, sim.BenchConfig{}, benchOpt{})
	a.run(t)
	a.awaitStage(t, "A1", "console-ready")
	_, err := a.attacker(t, "EVIL-0001", 9).Register(context.Background())
	wantStatus(t, "unknown serial", err, http.StatusForbidden)
	if n := a.bench.Vault.Requests("/v1/serial"); n != 0 {
		t.Errorf("the vault saw %d serial requests", n)
	}
	a.release()
	v := a.verdict(t, "A1")
	if v.State != lines.StatePass {
		t.Fatalf("A1: %s %s %s", v.State, v.Reason, v.Detail)
	}
	as := a.unitAssertions(t, v.Unit)
	if s := a.signed(); len(s) != 1 || len(as) != 1 || s[0] != "SIM00001 "+as[0].DeviceKeyID || as[0].DeviceKeyID == keyID(9) {
		t.Errorf("signed %v, unit holds %+v", s, as)
	}
	if st := a.p.Health()[0].ProxyStats; st.NoWindow == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestAttackBoardSerialBeforeWindow: before the board's boot is triggered
// nothing is forwarded for its serial, not even a request-id; once it
// registers, it gets its own identity.
func TestAttackBoardSerialBeforeWindow(t *testing.T) {
	a := newAttackBench(t, sim.BenchConfig{}, benchOpt{})
	// The proxy runs, the board waits in its disabled slot: no window.
	if err := a.p.SetDisabled("A1", true); err != nil {
		t.Fatal(err)
	}
	a.run(t)
	_, err := a.attacker(t, "SIM00001", 9).Register(context.Background())
	wantStatus(t, "the board's serial before its window", err, http.StatusForbidden)
	st, body := a.post(t, nil, "serial", a.stream(t, 9, strings.Repeat("ab", 20), "SIM00001", nil))
	if st != http.StatusForbidden || !bytes.Contains(body, []byte("station: no board of line line1 is registering with serial SIM00001")) {
		t.Errorf("serial before the window: %d %s", st, body)
	}
	// Nothing forwarded: no request-id through the proxy (the station's own
	// api-key probe goes to the vault directly), no serial at all.
	if n, fwd := a.bench.Vault.Requests("/v1/serial"), a.p.Health()[0].ProxyStats.RequestIDs; n != 0 || fwd != 0 {
		t.Errorf("the vault saw %d serial requests, the proxy forwarded %d request-ids", n, fwd)
	}
	a.release()
	if err := a.p.SetDisabled("A1", false); err != nil {
		t.Fatal(err)
	}
	v := a.verdict(t, "A1")
	as := a.unitAssertions(t, v.Unit)
	if v.State != lines.StatePass || len(as) != 1 || as[0].DeviceKeyID == keyID(9) {
		t.Fatalf("A1: %s %s %s %+v", v.State, v.Reason, v.Detail, as)
	}
	if s := a.signed(); len(s) != 1 || s[0] != "SIM00001 "+as[0].DeviceKeyID {
		t.Errorf("signed %v", s)
	}
}

// TestAttackHijackCaught: a peer registers the board's serial first, while
// its window is open. The unit then has an identity: the board's own
// request is a second identity and is refused (409) without the vault; the
// console check finds the board does not hold the recorded identity and
// fails the unit identity-mismatch, with the recorded text as evidence.
func TestAttackHijackCaught(t *testing.T) {
	a := newAttackBench(t, sim.BenchConfig{}, benchOpt{proofWait: 3 * time.Second})
	a.run(t)
	a.awaitStage(t, "A1", "console-ready")
	if _, err := a.attacker(t, "SIM00001", 9).Register(context.Background()); err != nil {
		t.Fatalf("the hijack itself: %v", err)
	}
	// A third identity is refused too.
	_, err := a.attacker(t, "SIM00001", 8).Register(context.Background())
	wantStatus(t, "a second identity for the unit", err, http.StatusConflict)
	a.release() // the board asks for its serial now
	v := a.verdict(t, "A1")
	if v.State != lines.StateFail || v.Reason != lines.ReasonIdentityMismatch {
		t.Fatalf("A1: %s %s %s", v.State, v.Reason, v.Detail)
	}
	if s := a.signed(); len(s) != 1 || s[0] != "SIM00001 "+keyID(9) {
		t.Errorf("signed %v: the vault must sign once, for the first request", s)
	}
	if st := a.p.Health()[0].ProxyStats; st.Taken < 1 {
		t.Errorf("stats %+v: the third identity must be refused", st)
	}
	evs, err := a.led.Events(context.Background(), v.Unit)
	if err != nil {
		t.Fatal(err)
	}
	evidence := false
	for _, e := range evs {
		if e.Kind == "identity" && bytes.Contains(e.Data, []byte(`"recorded_device_key":"`+keyID(9)+`"`)) && bytes.Contains(e.Data, []byte("recorded_assertion")) {
			evidence = true
		}
	}
	if !evidence {
		t.Errorf("no identity evidence among %d events", len(evs))
	}
}

// TestAttackStaleCaptureOnRetry: a board whose unit timed out before it
// registered is refused when it asks late (its window closed, the vault is
// not called); worked again, it gets a new identity of its own, never an
// earlier unit's.
func TestAttackStaleCaptureOnRetry(t *testing.T) {
	a := newAttackBench(t, sim.BenchConfig{}, benchOpt{registerTimeout: 8 * time.Second})
	a.run(t)
	v, i := a.w.await(t, 0, "A1's first verdict", verdictOf("A1"))
	if v.Reason != lines.ReasonRegistrationTimeout {
		t.Fatalf("A1 first: %s %s", v.State, v.Reason)
	}
	first := v.Unit
	a.release() // the board registers late
	ceiling := time.Now().Add(2 * time.Minute)
	for a.p.Health()[0].ProxyStats.NoWindow == 0 {
		if time.Now().After(ceiling) {
			t.Fatal("the late registration never reached the proxy")
		}
		time.Sleep(20 * time.Millisecond) // polls a state, never assumes a time
	}
	if s := a.signed(); len(s) != 0 {
		t.Fatalf("signed %v for a board with no unit registering", s)
	}
	board, _ := a.bench.BoardAt(a.bench.Slots[0].Port)
	if err := board.ReenterFlashMode(); err != nil {
		t.Fatal(err)
	}
	if err := a.p.Retry("A1"); err != nil {
		t.Fatal(err)
	}
	v, _ = a.w.await(t, i, "A1's second verdict", verdictOf("A1"))
	if v.State != lines.StatePass || v.Unit == first {
		t.Fatalf("A1 second: unit %d %s %s %s", v.Unit, v.State, v.Reason, v.Detail)
	}
	if as := a.unitAssertions(t, first); len(as) != 0 {
		t.Errorf("the timed-out unit got %+v", as)
	}
	as := a.unitAssertions(t, v.Unit)
	if s := a.signed(); len(as) != 1 || len(s) != 1 || s[0] != "SIM00001 "+as[0].DeviceKeyID || as[0].Revision != 1 {
		t.Errorf("the retried unit holds %+v, the vault signed %v", as, s)
	}
}

// TestAttackRetryGetsNewIdentity: a board that registered, worked again,
// gets a new serial assertion for its new device key (revision 2); the
// first unit's capture is never the second's.
func TestAttackRetryGetsNewIdentity(t *testing.T) {
	a := newAttackBench(t, sim.BenchConfig{}, benchOpt{})
	a.release()
	a.run(t)
	v1, i := a.w.await(t, 0, "A1's first verdict", verdictOf("A1"))
	if v1.State != lines.StatePass {
		t.Fatalf("A1 first: %s %s %s", v1.State, v1.Reason, v1.Detail)
	}
	board, _ := a.bench.BoardAt(a.bench.Slots[0].Port)
	if err := board.ReenterFlashMode(); err != nil {
		t.Fatal(err)
	}
	if err := a.p.Retry("A1"); err != nil {
		t.Fatal(err)
	}
	v2, _ := a.w.await(t, i, "A1's second verdict", verdictOf("A1"))
	if v2.State != lines.StatePass || v2.Unit == v1.Unit {
		t.Fatalf("A1 second: unit %d %s %s %s", v2.Unit, v2.State, v2.Reason, v2.Detail)
	}
	a1, a2 := a.unitAssertions(t, v1.Unit), a.unitAssertions(t, v2.Unit)
	if len(a1) != 1 || len(a2) != 1 || a1[0].ID == a2[0].ID || a1[0].DeviceKeyID == a2[0].DeviceKeyID || a2[0].Revision != 2 || !a2[0].Duplicate {
		t.Errorf("first unit %+v, second %+v", a1, a2)
	}
	if s := a.signed(); len(s) != 2 || s[1] != "SIM00001 "+a2[0].DeviceKeyID {
		t.Errorf("signed %v", s)
	}
}

// TestAttackStaleNonce: a request with a request-id the vault never issued
// through the station is refused by the station (the vault is not
// called); the refusal does not fail the board, which then registers.
func TestAttackStaleNonce(t *testing.T) {
	a := newAttackBench(t, sim.BenchConfig{}, benchOpt{})
	a.run(t)
	a.awaitStage(t, "A1", "console-ready")
	st, body := a.post(t, nil, "serial", a.stream(t, 9, strings.Repeat("0", 40), "SIM00001", nil))
	if st != http.StatusBadRequest || !bytes.Contains(body, []byte(`"error_code":"invalid-nonce"`)) || !bytes.Contains(body, []byte("station: ")) {
		t.Errorf("stale nonce: %d %s", st, body)
	}
	if n := a.bench.Vault.Requests("/v1/serial"); n != 0 {
		t.Errorf("the vault saw %d serial requests", n)
	}
	a.release()
	v := a.verdict(t, "A1")
	if v.State != lines.StatePass {
		t.Fatalf("A1: %s %s %s", v.State, v.Reason, v.Detail)
	}
	as := a.unitAssertions(t, v.Unit)
	if s := a.signed(); len(s) != 1 || len(as) != 1 || s[0] != "SIM00001 "+as[0].DeviceKeyID || as[0].DeviceKeyID == keyID(9) {
		t.Errorf("signed %v, unit holds %+v", s, as)
	}
}

// TestAttackConcurrentDuplicates: four copies of one request at once (the
// way a retrying client or a replaying peer sends them) make the vault sign
// once; every copy gets the same answer and the unit passes with it. The
// test plays the board's snapd itself (the board never registers), on a
// line without the console check.
func TestAttackConcurrentDuplicates(t *testing.T) {
	a := newAttackBench(t, sim.BenchConfig{FaultsOf: func(int) sim.Faults { return sim.Faults{NeverRegisters: true} }},
		benchOpt{edit: func(st *lines.Station) { st.Lines[0].Capture.User = "" }})
	a.run(t)
	a.awaitStage(t, "A1", "console-ready")
	body := a.stream(t, 7, a.requestID(t), "SIM00001", nil)
	var wg sync.WaitGroup
	answers := make([][]byte, 4)
	status := make([]int, 4)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(a.proxyURL(t)+"serial", serialvault.AssertionType, bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			status[i] = resp.StatusCode
			answers[i], _ = io.ReadAll(resp.Body)
		}()
	}
	wg.Wait()
	for i := range answers {
		if status[i] != http.StatusOK || !bytes.Equal(answers[i], answers[0]) {
			t.Errorf("copy %d: %d %s", i, status[i], answers[i])
		}
	}
	v := a.verdict(t, "A1")
	if v.State != lines.StatePass {
		t.Fatalf("A1: %s %s %s", v.State, v.Reason, v.Detail)
	}
	if s := a.signed(); len(s) != 1 || s[0] != "SIM00001 "+keyID(7) {
		t.Errorf("signed %v", s)
	}
	if as := a.unitAssertions(t, v.Unit); len(as) != 1 || string(as[0].Text) != string(answers[0]) {
		t.Errorf("unit holds %+v", as)
	}
}

// TestAttackHugeAndDeepBodies: a 10 MB body is refused after 64 KiB (413);
// a 60 KiB body nested 30000 deep (the old full YAML decode took the
// station to 670 MB) costs a scan. Neither reaches the vault, and the
// board registers.
func TestAttackHugeAndDeepBodies(t *testing.T) {
	a := newAttackBench(t, sim.BenchConfig{}, benchOpt{})
	a.run(t)
	a.awaitStage(t, "A1", "console-ready")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	// 10 MB: refused once 64 KiB are read (the client may see the
	// connection closed under its upload instead of the answer).
	resp, err := http.Post(a.proxyURL(t)+"serial", serialvault.AssertionType, bytes.NewReader(bytes.Repeat([]byte("serial: SIM00001\n"), 10<<20/17)))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("10 MB body: %d", resp.StatusCode)
		}
	} else if !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "broken pipe") {
		t.Errorf("10 MB body: %v", err)
	}
	deep := []byte("serial: SIM00001\nx: " + strings.Repeat("[", 30000) + "\n")
	for _, header := range []string{"", "SIM00001"} {
		st, body := a.post(t, nil, "serial", a.stream(t, 9, a.requestID(t), header, deep))
		if st != http.StatusBadRequest || !bytes.Contains(body, []byte("nests deeper")) {
			t.Errorf("deep body (serial header %q): %d %s", header, st, body)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("the two requests allocated %d MiB", grew>>20)
	}
	if n := a.bench.Vault.Requests("/v1/serial"); n != 0 {
		t.Errorf("the vault saw %d serial requests", n)
	}
	a.release()
	if v := a.verdict(t, "A1"); v.State != lines.StatePass || len(a.signed()) != 1 {
		t.Errorf("A1: %s %s, signed %v", v.State, v.Reason, a.signed())
	}
}

// TestAttackOutsideAllow: with proxy.allow the bench's address only, a
// caller from elsewhere (here 127.0.0.2) gets 403 before its request is
// read, even for the board's own serial while its window is open.
func TestAttackOutsideAllow(t *testing.T) {
	a := newAttackBench(t, sim.BenchConfig{}, benchOpt{edit: func(st *lines.Station) { st.Lines[0].Proxy.Allow = []string{"127.0.0.1/32"} }})
	a.run(t)
	a.awaitStage(t, "A1", "console-ready")
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	elsewhere := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	if st, body := a.post(t, elsewhere, "request-id", nil); st != http.StatusForbidden || !bytes.Contains(body, []byte("station: this address may not use")) {
		t.Errorf("request-id from outside allow: %d %s", st, body)
	}
	d := a.attacker(t, "SIM00001", 9)
	d.HTTP = elsewhere
	_, err := d.Register(context.Background())
	wantStatus(t, "serial from outside allow", err, http.StatusForbidden)
	// Nothing forwarded: no request-id through the proxy (the station's own
	// api-key probe goes to the vault directly), no serial at all.
	if n, fwd := a.bench.Vault.Requests("/v1/serial"), a.p.Health()[0].ProxyStats.RequestIDs; n != 0 || fwd != 0 {
		t.Errorf("the vault saw %d serial requests, the proxy forwarded %d request-ids", n, fwd)
	}
	a.release()
	v := a.verdict(t, "A1")
	as := a.unitAssertions(t, v.Unit)
	if v.State != lines.StatePass || len(a.signed()) != 1 || len(as) != 1 || as[0].DeviceKeyID == keyID(9) {
		t.Errorf("A1: %s %s, signed %v", v.State, v.Reason, a.signed())
	}
	if st := a.p.Health()[0].ProxyStats; st.Forbidden < 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestAttackDuplicateHardwareSerials: two boards of the line report one
// hardware serial. The second to reach its boot is not booted and fails
// serial-conflict (never a silent cross-link); the first registers.
func TestAttackDuplicateHardwareSerials(t *testing.T) {
	a := newAttackBench(t, sim.BenchConfig{Boards: 4, SerialOf: func(i int) string {
		return map[int]string{0: "TWIN-1", 1: "B-ONE", 2: "TWIN-1", 3: "B-TWO"}[i]
	}}, benchOpt{})
	a.run(t)
	var conflict lines.Event
	_, _ = a.w.await(t, 0, "a serial-conflict", func(ev lines.Event) bool {
		if ev.Kind == lines.EventVerdict && (ev.Slot == "A1" || ev.Slot == "A2") {
			conflict = ev
			return true
		}
		return false
	})
	if conflict.State != lines.StateFail || conflict.Reason != lines.ReasonSerialConflict {
		t.Fatalf("%s: %s %s %s", conflict.Slot, conflict.State, conflict.Reason, conflict.Detail)
	}
	other := map[string]string{"A1": "A2", "A2": "A1"}[conflict.Slot]
	if !strings.Contains(conflict.Detail, "slot "+other) {
		t.Errorf("the conflict does not name the other slot: %s", conflict.Detail)
	}
	a.release()
	v := a.verdict(t, other)
	as := a.unitAssertions(t, v.Unit)
	if v.State != lines.StatePass || len(as) != 1 {
		t.Fatalf("%s: %s %s %s", other, v.State, v.Reason, v.Detail)
	}
	if s := a.signed(); len(s) != 1 || s[0] != "TWIN-1 "+as[0].DeviceKeyID {
		t.Errorf("signed %v", s)
	}
	if as := a.unitAssertions(t, conflict.Unit); len(as) != 0 {
		t.Errorf("the conflicting unit got %+v", as)
	}
}
