package vaulttest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashstation/flashstation/secret"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

const apiKey = "model-api-key-0001"

// key returns shared generated keys: 0 the vault's, 1.. devices'.
func key(t testing.TB, i int) *serialvault.PrivateKey { return vaulttest.TestKey(i) }

func acmeModel(t testing.TB) *serialvault.Assertion {
	t.Helper()
	b, err := os.ReadFile("../testdata/vectors/10-model-acme-uc22.txt")
	if err != nil {
		t.Fatal(err)
	}
	a, err := serialvault.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	vault *vaulttest.Vault
	srv   *httptest.Server
	admin *httptest.Server
	clock *clock
	model *serialvault.Assertion
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)}
	v := vaulttest.New(vaulttest.Options{
		Models:     []vaulttest.Model{{BrandID: "acme", Model: "acme-gw-armhf", APIKey: apiKey, Key: key(t, 0)}},
		AdminUsers: map[string]string{"admin": "admin-key"},
		Now:        c.Now,
		Location:   time.FixedZone("CEST", 2*3600),
	})
	f := &fixture{vault: v, srv: httptest.NewServer(v.Handler()), admin: httptest.NewServer(v.AdminHandler()), clock: c, model: acmeModel(t)}
	t.Cleanup(f.srv.Close)
	t.Cleanup(f.admin.Close)
	return f
}

type answer struct {
	status      int
	contentType string
	body        string
}

func (f *fixture) post(t *testing.T, path, key string, body []byte) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, bytes.NewReader(body))
	if key != "" {
		req.Header.Set("api-key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

func (f *fixture) requestID(t *testing.T) string {
	t.Helper()
	a := f.post(t, "/v1/request-id", apiKey, nil)
	var body struct {
		Success   bool   `json:"success"`
		Message   string `json:"message"`
		RequestID string `json:"request-id"`
	}
	if err := json.Unmarshal([]byte(a.body), &body); err != nil || !body.Success || len(body.RequestID) != 40 {
		t.Fatalf("request-id answer %d %q", a.status, a.body)
	}
	if a.body != `{"success":true,"message":"","request-id":"`+body.RequestID+"\"}\n" || a.contentType != "application/json; charset=UTF-8" {
		t.Errorf("request-id answer not the vault's exact JSON: %q %q", a.contentType, a.body)
	}
	for _, c := range body.RequestID {
		if !strings.ContainsRune("0123456789abcdef", c) {
			t.Fatalf("request-id %q is not lowercase hex", body.RequestID)
		}
	}
	return body.RequestID
}

// stream builds a serial-request + model stream as snapd sends it.
func (f *fixture) stream(t *testing.T, dev *serialvault.PrivateKey, requestID, serial string, body []byte, model *serialvault.Assertion) []byte {
	t.Helper()
	req, err := serialvault.NewSerialRequest(dev, model.HeaderString("brand-id"), model.HeaderString("model"), requestID, serial, body, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return append(append(req.Encode(), '\n'), model.Encode()...)
}

func wantError(t *testing.T, a answer, code, msg string) {
	t.Helper()
	want := `{"success":false,"error_code":"` + code + `","error_subcode":"","message":"` + msg + `","StatusCode":400}` + "\n"
	if a.status != 400 || a.contentType != "application/json; charset=UTF-8" || (msg != "" && a.body != want) || !strings.Contains(a.body, `"error_code":"`+code+`"`) {
		t.Errorf("got %d %q %q\nwant 400 %s", a.status, a.contentType, a.body, want)
	}
}

func TestSerialSigned(t *testing.T) {
	f := newFixture(t)
	id := f.requestID(t)
	body := []byte("mac: \"00:11:22:33:44:55\"\n")
	a := f.post(t, "/v1/serial", apiKey, f.stream(t, key(t, 1), id, "LINE1-000200", body, f.model))
	if a.status != 200 || a.contentType != "application/x.ubuntu.assertion" {
		t.Fatalf("serial answer %d %q %s", a.status, a.contentType, a.body)
	}
	s, err := serialvault.Decode([]byte(a.body))
	if err != nil {
		t.Fatal(err)
	}
	if err := serialvault.Verify(s, key(t, 0).Public()); err != nil {
		t.Error(err)
	}
	var names []string
	for _, h := range s.Headers() {
		names = append(names, h.Name)
	}
	if got := strings.Join(names, ","); got != "type,authority-id,revision,brand-id,model,serial,device-key,device-key-sha3-384,timestamp,body-length,sign-key-sha3-384" {
		t.Errorf("header order %s", got)
	}
	if s.HeaderString("timestamp") != "2026-11-28T12:00:00+02:00" {
		t.Errorf("timestamp %q, want vault local time", s.HeaderString("timestamp"))
	}
	if string(s.Body()) != string(body) || s.HeaderString("revision") != "1" || s.HeaderString("device-key-sha3-384") != key(t, 1).Public().ID() {
		t.Errorf("serial = %s", a.body)
	}
	if _, err := serialvault.AsSerial(s); err != nil {
		t.Error(err)
	}
	if !strings.HasSuffix(a.body, "\n") || strings.HasSuffix(a.body, "\n\n") {
		t.Errorf("answer must be exactly one assertion ending in one newline")
	}
}

// TestCheckOrder sends requests that fail at each step and checks the code,
// and that the nonce is spent exactly from step 5 on.
func TestCheckOrder(t *testing.T) {
	f := newFixture(t)
	dev := key(t, 1)
	otherModel, err := serialvault.Sign(map[string]any{
		"type": "model", "authority-id": "acme", "series": "16", "brand-id": "acme", "model": "other-model",
		"architecture": "armhf", "gadget": "g", "kernel": "k", "timestamp": "2026-01-01T00:00:00Z",
	}, nil, key(t, 2), f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		key        string
		body       func(id string) []byte
		code, msg  string
		nonceSpent bool
	}{
		{"no api-key", "", func(id string) []byte { return f.stream(t, dev, id, "S1", nil, f.model) }, "invalid-api-key", "Invalid API key used", false},
		{"unknown api-key", "nope", func(id string) []byte { return f.stream(t, dev, id, "S1", nil, f.model) }, "invalid-api-key", "Invalid API key used", false},
		{"empty body", apiKey, func(string) []byte { return nil }, "empty-data", "No data supplied for signing", false},
		{"garbage", apiKey, func(string) []byte { return []byte("this is not an assertion\n\n") }, "invalid-assertion", "", false},
		{"model first", apiKey, func(string) []byte { return append(f.model.Encode(), '\n') }, "invalid-type", "The assertion type must be 'serial-request'", false},
		{"no model", apiKey, func(id string) []byte {
			r, _ := serialvault.NewSerialRequest(dev, "acme", "acme-gw-armhf", id, "S1", nil, f.clock.Now())
			return r.Encode()
		}, "invalid-second-type", "The assertion type must be 'model'", false},
		{"four assertions", apiKey, func(id string) []byte {
			s := f.stream(t, dev, id, "S1", nil, f.model)
			return append(append(append(s, '\n'), f.model.Encode()...), append([]byte("\n"), f.model.Encode()...)...)
		}, "invalid-assertion", "", false},
		{"forged request signature", apiKey, func(id string) []byte {
			s := f.stream(t, dev, id, "S1", nil, f.model)
			return bytes.Replace(s, []byte("serial: S1"), []byte("serial: S2"), 1)
		}, "invalid-assertion", "", false},
		{"mismatched model", apiKey, func(id string) []byte {
			r, _ := serialvault.NewSerialRequest(dev, "acme", "acme-gw-armhf", id, "S1", nil, f.clock.Now())
			return append(append(r.Encode(), '\n'), otherModel.Encode()...)
		}, "mismatched-model", "Model and serial-request assertion do not match", false},
		{"unknown model", apiKey, func(id string) []byte { return f.stream(t, dev, id, "S1", nil, otherModel) }, "invalid-model", "Cannot find a matching model or sub-store model", true},
		{"no serial", apiKey, func(id string) []byte { return f.stream(t, dev, id, "", []byte("mac: x\n"), f.model) }, "create-assertion", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := f.requestID(t)
			a := f.post(t, "/v1/serial", tc.key, tc.body(id))
			wantError(t, a, tc.code, tc.msg)
			// Reusing the nonce tells whether the vault spent it.
			again := f.post(t, "/v1/serial", apiKey, f.stream(t, dev, id, "REUSE", nil, f.model))
			if spent := again.status == 400; spent != tc.nonceSpent {
				t.Errorf("nonce spent = %v, want %v (%s)", spent, tc.nonceSpent, again.body)
			}
			if tc.nonceSpent {
				wantError(t, again, "invalid-nonce", "Nonce is invalid or expired")
			}
		})
	}
}

func TestNonces(t *testing.T) {
	f := newFixture(t)
	dev := key(t, 1)
	id := f.requestID(t)
	if a := f.post(t, "/v1/serial", apiKey, f.stream(t, dev, id, "N1", nil, f.model)); a.status != 200 {
		t.Fatalf("first use: %d %s", a.status, a.body)
	}
	wantError(t, f.post(t, "/v1/serial", apiKey, f.stream(t, dev, id, "N2", nil, f.model)), "invalid-nonce", "Nonce is invalid or expired")
	wantError(t, f.post(t, "/v1/serial", apiKey, f.stream(t, dev, "0123456789abcdef0123456789abcdef01234567", "N3", nil, f.model)),
		"invalid-nonce", "Nonce is invalid or expired")

	old := f.requestID(t)
	f.clock.Add(599 * time.Second)
	fresh := f.requestID(t)
	if a := f.post(t, "/v1/serial", apiKey, f.stream(t, dev, old, "N4", nil, f.model)); a.status != 200 {
		t.Errorf("nonce refused after 599 s: %s", a.body)
	}
	f.clock.Add(601 * time.Second)
	wantError(t, f.post(t, "/v1/serial", apiKey, f.stream(t, dev, fresh, "N5", nil, f.model)), "invalid-nonce", "Nonce is invalid or expired")
}

func TestDuplicatesGetNextRevision(t *testing.T) {
	f := newFixture(t)
	serialOf := func(dev *serialvault.PrivateKey, serial string) *serialvault.Assertion {
		a := f.post(t, "/v1/serial", apiKey, f.stream(t, dev, f.requestID(t), serial, nil, f.model))
		if a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
		s, err := serialvault.Decode([]byte(a.body))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if r := serialOf(key(t, 1), "D1").Revision(); r != 1 {
		t.Errorf("first revision %d", r)
	}
	if r := serialOf(key(t, 2), "D1").Revision(); r != 2 { // same serial, other device
		t.Errorf("duplicate serial revision %d, want 2", r)
	}
	if r := serialOf(key(t, 1), "D2").Revision(); r != 2 { // same device key, other serial
		t.Errorf("duplicate device key revision %d, want 2", r)
	}
	if r := serialOf(key(t, 1), "D1").Revision(); r != 3 {
		t.Errorf("third revision %d, want 3", r)
	}
	if n := len(f.vault.SigningLog()); n != 4 {
		t.Errorf("signing log has %d rows", n)
	}
}

func TestSerialFromBody(t *testing.T) {
	f := newFixture(t)
	a := f.post(t, "/v1/serial", apiKey, f.stream(t, key(t, 1), f.requestID(t), "", []byte("serial: BODY-7\nmac: x\n"), f.model))
	if a.status != 200 || !strings.Contains(a.body, "\nserial: BODY-7\n") {
		t.Errorf("%d %s", a.status, a.body)
	}
}

func TestMethodsAndRoutes(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{http.MethodGet, "/v1/request-id", 405, ""},
		{http.MethodPut, "/v1/serial", 405, ""},
		{http.MethodPost, "/v1/version", 405, ""},
		{http.MethodGet, "/v1/version", 200, `{"version":"2.9-double","revision":"flashstation"}` + "\n"},
		{http.MethodGet, "/v1/health", 200, `{"database":"healthy"}` + "\n"},
	} {
		req, _ := http.NewRequest(tc.method, f.srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || string(b) != tc.body {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, b, tc.status, tc.body)
		}
	}
}

func TestLoggingFailure(t *testing.T) {
	f := newFixture(t)
	f.vault.SetLoggingFailure(true)
	wantError(t, f.post(t, "/v1/serial", apiKey, f.stream(t, key(t, 1), f.requestID(t), "L1", nil, f.model)),
		"logging-assertion", "Error logging the serial assertion")
	if len(f.vault.SigningLog()) != 0 {
		t.Error("a row was logged")
	}
}

func TestAdminSigningLog(t *testing.T) {
	f := newFixture(t)
	f.post(t, "/v1/serial", apiKey, f.stream(t, key(t, 1), f.requestID(t), "A1", nil, f.model))
	ctx := context.Background()
	c, err := serialvault.NewClient(f.srv.URL+"/v1/", serialvault.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs, err := c.SigningLog(ctx, f.admin.URL, "admin", secretOf("admin-key"))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 1 || logs[0].SerialNumber != "A1" || logs[0].Make != "acme" || logs[0].Fingerprint != key(t, 1).Public().ID() || logs[0].Revision != 1 {
		t.Errorf("logs = %+v", logs)
	}
	_, err = c.SigningLog(ctx, f.admin.URL, "admin", secretOf("wrong"))
	if ve, ok := err.(*serialvault.VaultError); !ok || ve.Code != "error-auth" || ve.Status != 400 {
		t.Errorf("wrong admin key: %v", err)
	}
}

func TestUnavailableDropsConnections(t *testing.T) {
	f := newFixture(t)
	f.vault.SetUnavailable(true)
	if _, err := http.Get(f.srv.URL + "/v1/version"); err == nil {
		t.Error("request answered while down")
	}
	f.vault.SetUnavailable(false)
	if resp, err := http.Get(f.srv.URL + "/v1/version"); err != nil || resp.StatusCode != 200 {
		t.Errorf("not back: %v", err)
	}
}

func secretOf(s string) secret.Value { return secret.New(s) }
