package serialvault_test

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashstation/flashstation/secret"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

const lineAPIKey = "acme-model-key"

func acmeModel(t testing.TB) *serialvault.Assertion {
	t.Helper()
	return mustDecodeT(t, "10-model-acme-uc22.txt")
}

func mustDecodeT(t testing.TB, name string) *serialvault.Assertion {
	t.Helper()
	a, err := serialvault.Decode(readVector(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newVault(t testing.TB, signer *serialvault.PrivateKey) (*vaulttest.Vault, *httptest.Server) {
	t.Helper()
	v := vaulttest.New(vaulttest.Options{
		Models: []vaulttest.Model{{BrandID: "acme", Model: "acme-gw-armhf", APIKey: lineAPIKey, Key: signer}},
	})
	srv := httptest.NewServer(v.Handler())
	t.Cleanup(srv.Close)
	return v, srv
}

func fastClient(t testing.TB, url, key string) *serialvault.Client {
	t.Helper()
	c, err := serialvault.NewClient(url, serialvault.ClientOptions{APIKey: secret.New(key), Backoff: time.Millisecond, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientAgainstDouble(t *testing.T) {
	ctx := context.Background()
	_, srv := newVault(t, testKey(t))
	c := fastClient(t, srv.URL+"/v1", lineAPIKey)
	v, err := c.Version(ctx)
	if err != nil || v.Version == "" {
		t.Fatalf("version %+v %v", v, err)
	}
	id, err := c.RequestID(ctx)
	if err != nil || len(id) != 40 {
		t.Fatalf("request-id %q %v", id, err)
	}
	dev := testKeyN(t, 1)
	req, _ := serialvault.NewSerialRequest(dev, "acme", "acme-gw-armhf", id, "C-1", nil, fixedNow)
	model := acmeModel(t)
	ans, err := c.Serial(ctx, append(append(req.Encode(), '\n'), model.Encode()...))
	if err != nil {
		t.Fatal(err)
	}
	if ans.Serial.Serial != "C-1" || !ans.Serial.DeviceKey.Equal(dev.Public()) {
		t.Errorf("serial %+v", ans.Serial)
	}
	// The nonce is single use: the vault's 400 comes back decoded.
	_, err = c.Serial(ctx, append(append(req.Encode(), '\n'), model.Encode()...))
	var ve *serialvault.VaultError
	if !errors.As(err, &ve) || ve.Code != "invalid-nonce" || ve.Message != "Nonce is invalid or expired" || ve.Status != 400 || ve.Temporary() {
		t.Errorf("reused nonce: %#v", err)
	}
	bad := fastClient(t, srv.URL+"/v1/", "wrong-key")
	if _, err := bad.RequestID(ctx); !errors.As(err, &ve) || ve.Code != "invalid-api-key" {
		t.Errorf("wrong key: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-key") {
		t.Errorf("error shows the api-key: %v", err)
	}
}

// TestClientRetriesAndPolls: status above 500 and network errors are
// retried with back-off, 500 is not, 202 sends the same request again, and
// JSON errors decode whatever the charset.
func TestClientRetriesAndPolls(t *testing.T) {
	ctx := context.Background()
	var calls atomic.Int32
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch r.URL.Path {
		case "/v1/request-id":
			if n <= 2 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"success":true,"message":"","request-id":"0123456789abcdef0123456789abcdef01234567"}`))
		case "/v1/version":
			w.Header().Set("Content-Type", "application/json; charset=ISO-8859-1")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"success":false,"error_code":"server-error","error_subcode":"","message":"boom","StatusCode":500}`))
		case "/v1/serial":
			buf := make([]byte, 10)
			k, _ := r.Body.Read(buf)
			bodies = append(bodies, string(buf[:k]))
			if len(bodies) < 3 {
				w.WriteHeader(http.StatusAccepted)
				return
			}
			w.Header().Set("Content-Type", "application/json;charset=utf-8")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"success":false,"error_code":"invalid-nonce","error_subcode":"","message":"Nonce is invalid or expired","StatusCode":400}`))
		}
	}))
	defer srv.Close()
	c := fastClient(t, srv.URL+"/v1/", "k")
	if id, err := c.RequestID(ctx); err != nil || id == "" || calls.Load() != 3 {
		t.Errorf("request-id after two 503s: %q %v (calls %d)", id, err, calls.Load())
	}
	calls.Store(0)
	_, err := c.Version(ctx)
	var ve *serialvault.VaultError
	if !errors.As(err, &ve) || ve.Code != "server-error" || ve.Message != "boom" || calls.Load() != 1 {
		t.Errorf("500: %v after %d calls (want no retry)", err, calls.Load())
	}
	_, err = c.Serial(ctx, []byte("same-request-body"))
	if !errors.As(err, &ve) || ve.Code != "invalid-nonce" {
		t.Errorf("serial after polls: %v", err)
	}
	if len(bodies) != 3 || bodies[0] != bodies[2] {
		t.Errorf("202 must resend the same request: %q", bodies)
	}

	// A vault that never answers: the network error is retried, then
	// returned after the default four attempts.
	srv.Close()
	var attempts atomic.Int32
	down, err := serialvault.NewClient(srv.URL+"/v1/", serialvault.ClientOptions{Backoff: time.Millisecond,
		HTTPClient: &http.Client{Transport: countingTransport{http.DefaultTransport, &attempts}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Version(ctx); err == nil || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("down vault: %v", err)
	}
	if n := attempts.Load(); n != 4 {
		t.Errorf("down vault: %d attempts, want 4", n)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Version(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

// countingTransport counts the requests it sends.
type countingTransport struct {
	http.RoundTripper
	n *atomic.Int32
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.RoundTripper.RoundTrip(r)
}

func TestParseSerialAnswer(t *testing.T) {
	serial := readVector(t, "04-serial-response.txt")
	accountKey := readVector(t, "12-account-key-generic-models.real.txt")
	model := readVector(t, "10-model-acme-uc22.txt")
	join := func(parts ...[]byte) []byte {
		var out []byte
		for i, p := range parts {
			if i > 0 {
				out = append(out, '\n')
			}
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"one serial", serial, ""},
		{"serial and account-key", join(serial, accountKey), ""},
		{"two serials", join(serial, serial), "more than one serial"},
		{"model", join(serial, model), "unexpected model"},
		{"nothing", join(accountKey), "no serial"},
		{"garbage", []byte("<html>proxy error</html>"), "invalid assertion"},
	} {
		ans, err := serialvault.ParseSerialAnswer(tc.body)
		if tc.want == "" {
			if err != nil || ans.Serial.Serial != "LINE1-000200" {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestClientTLSWithCAFile: an https vault with its own CA is reached with
// the line's CA file, and refused without it.
func TestClientTLSWithCAFile(t *testing.T) {
	v, _ := newVault(t, testKey(t))
	srv := httptest.NewTLSServer(v.Handler())
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := serialvault.NewClient(srv.URL+"/v1/", serialvault.ClientOptions{APIKey: secret.New(lineAPIKey), CAFile: caFile, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RequestID(ctx); err != nil {
		t.Errorf("with CA file: %v", err)
	}
	plain := fastClient(t, srv.URL+"/v1/", lineAPIKey)
	if _, err := plain.Version(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without CA file: %v", err)
	}
	if _, err := serialvault.NewClient(srv.URL, serialvault.ClientOptions{CAFile: filepath.Join(t.TempDir(), "none.pem")}); err == nil {
		t.Error("missing CA file accepted")
	}
}
