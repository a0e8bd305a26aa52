package serialvault_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/ledger/spool"
	"github.com/flashstation/flashstation/secret"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

// Answers recorded from the real Serial Vault (testdata/vault/README.md):
// the client decodes them, and the double gives the same bytes.

// recorded reads a recorded raw HTTP answer.
func recorded(t *testing.T, name string) (int, []byte) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "vault", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	resp, err := http.ReadResponse(bufio.NewReader(f), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// replaying serves recorded answers by path.
func replaying(t *testing.T, answers map[string]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := answers[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if strings.HasSuffix(name, ".json") {
			b, _ := os.ReadFile(filepath.Join("testdata", "vault", name))
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			w.Write(b)
			return
		}
		status, body := recorded(t, name)
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRealSigningLog: the real vault's signing log (synced a number, a
// Total per row, total_count 0, newest first) decodes.
func TestRealSigningLog(t *testing.T) {
	srv := replaying(t, map[string]string{"/api/signinglog": "signinglog-real-3rows.json"})
	c := fastClient(t, srv.URL+"/v1/", "k")
	logs, err := c.SigningLog(context.Background(), srv.URL+"/", "admin", secret.New("admin-key"))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 3 || logs[0].ID != 134 || logs[0].SerialNumber != "SIM00001" || logs[0].Revision != 10 ||
		logs[0].Fingerprint != "-hP-hr_n4wy8AWRQ6dCkkcH8KHKM0q_rDVkiZq5h6SVPpzNO3fH-MaQURPugOGHC" || logs[2].Make != "acme" ||
		logs[0].Created.IsZero() || logs[0].Synced != 0 {
		t.Errorf("decoded %+v", logs)
	}
}

// TestRealHealth: /v1/health healthy, and with the database down (the
// vault's version still answers then).
func TestRealHealth(t *testing.T) {
	ok := replaying(t, map[string]string{"/v1/health": "health-ok.http", "/v1/version": "version.http"})
	if err := fastClient(t, ok.URL+"/v1/", "k").Health(context.Background()); err != nil {
		t.Errorf("healthy vault: %v", err)
	}
	down := replaying(t, map[string]string{"/v1/health": "health-db-down.http", "/v1/version": "version-db-down.http"})
	err := fastClient(t, down.URL+"/v1/", "k").Health(context.Background())
	if !errors.Is(err, serialvault.ErrDatabaseDown) || !strings.Contains(err.Error(), "dial unix") {
		t.Errorf("database down: %v", err)
	}
	// A vault without /v1/health: its version says it is alive.
	old := replaying(t, map[string]string{"/v1/version": "version.http"})
	if err := fastClient(t, old.URL+"/v1/", "k").Health(context.Background()); err != nil {
		t.Errorf("vault without health: %v", err)
	}
}

// TestDoubleAnswersAsTheRealVault: byte for byte, the double's answers
// to the recorded requests.
func TestDoubleAnswersAsTheRealVault(t *testing.T) {
	v, srv := newVault(t, testKey(t))
	do := func(method, path, key string) (int, []byte) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if key != "" {
			req.Header.Set("api-key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	check := func(what string, gotStatus int, got []byte, file string) {
		t.Helper()
		status, want := recorded(t, file)
		if gotStatus != status || !bytes.Equal(got, want) {
			t.Errorf("%s: double %d %q, real vault %d %q", what, gotStatus, got, status, want)
		}
	}
	st, b := do(http.MethodPost, "/v1/request-id", "wrong")
	check("request-id with a wrong key", st, b, "request-id-bad-key.http")
	st, b = do(http.MethodPost, "/v1/serial", lineAPIKey)
	check("empty serial request", st, b, "serial-empty.http")
	st, b = do(http.MethodGet, "/v1/health", "")
	check("health", st, b, "health-ok.http")

	v.SetDatabaseDown(true)
	st, b = do(http.MethodGet, "/v1/health", "")
	check("health, database down", st, b, "health-db-down.http")
	st, b = do(http.MethodPost, "/v1/request-id", lineAPIKey)
	check("request-id, database down", st, b, "request-id-db-down.http")
	if st, _ = do(http.MethodGet, "/v1/version", ""); st != http.StatusOK {
		t.Errorf("version, database down: %d", st)
	}
}

// TestDoubleSigningLogShape: the double's signing log has the real
// vault's shape (numbers, Total, total_count 0, newest first).
func TestDoubleSigningLogShape(t *testing.T) {
	v := vaulttest.New(vaulttest.Options{AdminUsers: map[string]string{"admin": "k"},
		Models: []vaulttest.Model{{BrandID: "acme", Model: "acme-gw-armhf", APIKey: lineAPIKey, Key: testKey(t)}}})
	srv := httptest.NewServer(v.Handler())
	defer srv.Close()
	admin := httptest.NewServer(v.AdminHandler())
	defer admin.Close()
	for _, s := range []string{"LOG-1", "LOG-2"} {
		d := &vaulttest.Device{Key: testKeyN(t, 1), Model: acmeModel(t), Serial: s, URL: srv.URL + "/v1/",
			Headers: map[string]string{"api-key": lineAPIKey}, MaxFailures: 1}
		if _, err := d.Register(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, admin.URL+"/api/signinglog", nil)
	req.Header.Set("user", "admin")
	req.Header.Set("api-key", "k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"synced":0`, `"Total":0`, `"total_count":0}`, `"serialnumber":"LOG-2"`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("signing log lacks %s: %s", want, body)
		}
	}
	if bytes.Index(body, []byte("LOG-2")) > bytes.Index(body, []byte("LOG-1")) {
		t.Errorf("not newest first: %s", body)
	}
}

// TestProxyVaultDatabaseDown: with the vault's database down, the vault
// refuses the line's api-key; the proxy asks its health and tells the
// board to retry (503), without spending its nonce: once the database is
// back, the same request is signed.
func TestProxyVaultDatabaseDown(t *testing.T) {
	b := newBench(t, benchOpt{})
	b.open(t, "DB-1")
	id := b.requestID(t)
	body := b.stream(t, 1, id, "DB-1", nil)
	b.vault.SetDatabaseDown(true)
	resp, err := http.Post(b.proxySrv.URL+"/v1/request-id", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("request-id, database down: %d", resp.StatusCode)
	}
	if st, _, ans := b.postSerial(t, body); st != http.StatusServiceUnavailable || !strings.Contains(ans, "database is down") {
		t.Errorf("serial, database down: %d %s", st, ans)
	}
	b.vault.SetDatabaseDown(false)
	if st, _, ans := b.postSerial(t, body); st != http.StatusOK {
		t.Errorf("the same request once the database is back: %d %s", st, ans)
	}
	if n := len(b.vault.SigningLog()); n != 1 {
		t.Errorf("signed %d", n)
	}
	// A wrong key is still a wrong key: forwarded as the vault says it.
	w := newBench(t, benchOpt{apiKey: "not-the-model-key"})
	w.open(t, "DB-2")
	resp, err = http.Post(w.proxySrv.URL+"/v1/request-id", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("wrong key: %d", resp.StatusCode)
	}
}

// TestDoublePanicsOnNumericBodySerial: as the real vault, the double fails
// (500) on an unquoted all-digit body serial after spending the nonce; the
// proxy refuses such a request before it reaches the vault.
func TestDoublePanicsOnNumericBodySerial(t *testing.T) {
	b := newBench(t, benchOpt{})
	c := fastClient(t, b.vaultSrv.URL+"/v1/", lineAPIKey)
	id, err := c.RequestID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stream := b.stream(t, 1, id, "", []byte("serial: 12345\n"))
	resp, err := c.Send(context.Background(), http.MethodPost, "serial", stream, nil)
	if err != nil || resp.Status != http.StatusInternalServerError {
		t.Fatalf("double: %v %+v", err, resp)
	}
	if b.vault.OpenNonces() != 0 {
		t.Error("the nonce was not spent")
	}
	b.open(t, "12345")
	before := b.vault.Requests("/v1/serial")
	st, _, ans := b.postSerial(t, b.stream(t, 1, b.requestID(t), "", []byte("serial: 12345\n")))
	if st != http.StatusBadRequest || !strings.Contains(ans, "quote it") || b.vault.Requests("/v1/serial") != before {
		t.Errorf("proxy: %d %s", st, ans)
	}
}

// TestProxySpoolSurvivesRestart: the ledger cannot record; the station is
// then restarted. The signed serial was spooled before the ledger write:
// the next start replays it into the ledger, and the board's retry of the
// same request gets the same answer without the vault signing again.
func TestProxySpoolSurvivesRestart(t *testing.T) {
	b := newBench(t, benchOpt{})
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := func(rec serialvault.Recorder) *serialvault.Proxy {
		ring := serialvault.NewKeyRing()
		ring.Add(serialvault.TrustedKey{Key: testKey(t).Public(), AccountID: "acme"})
		client := fastClient(t, b.vaultSrv.URL+"/v1/", lineAPIKey)
		p, err := serialvault.NewProxy(serialvault.ProxyConfig{LineID: "line1", BrandID: "acme", Model: "acme-gw-armhf", Keys: ring,
			Vault: client, Recorder: rec, Spool: sp, Windows: b.windows, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	b.rec.failing.Store(true)
	first := httptest.NewServer(proxy(b.rec))
	b.open(t, "SPOOL-1")
	c := fastClient(t, first.URL+"/v1/", "ignored")
	id, err := c.RequestID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	body := b.stream(t, 1, id, "SPOOL-1", nil)
	resp, err := c.Send(context.Background(), http.MethodPost, "serial", body, nil)
	if err != nil || resp.Status != http.StatusServiceUnavailable {
		t.Fatalf("ledger failing: %v %+v", err, resp)
	}
	first.Close() // the station stops (or is killed)
	if n := len(b.recorded(t)); n != 0 {
		t.Fatalf("%d recorded while the ledger failed", n)
	}

	// The next start: replay, then the proxy again.
	b.rec.failing.Store(false)
	replayed, err := sp.Replay(context.Background(), b.rec)
	if err != nil || len(replayed) != 1 {
		t.Fatalf("replay: %v %d", err, len(replayed))
	}
	as := b.recorded(t)
	if len(as) != 1 || as[0].Serial != "SPOOL-1" {
		t.Fatalf("after replay the ledger holds %+v", as)
	}
	p2 := proxy(b.rec)
	if n := p2.Preload(replayed); n != 1 {
		t.Fatalf("preloaded %d", n)
	}
	second := httptest.NewServer(p2)
	defer second.Close()
	resp, err = fastClient(t, second.URL+"/v1/", "ignored").Send(context.Background(), http.MethodPost, "serial", body, nil)
	if err != nil || resp.Status != http.StatusOK || string(resp.Body) != string(as[0].Text) {
		t.Fatalf("the board's retry after the restart: %v %+v", err, resp)
	}
	if n := len(b.vault.SigningLog()); n != 1 {
		t.Errorf("the vault signed %d times", n)
	}
	if n := len(b.recorded(t)); n != 1 {
		t.Errorf("%d recorded", n)
	}
}
