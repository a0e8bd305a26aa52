package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

// syncBuffer is a buffer safe for a command writing while the test reads;
// each write wakes those waiting for it.
type syncBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	more chan struct{} // closed at the next write; nil until someone waits
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.more != nil {
		close(s.more)
		s.more = nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// snapshot returns what was written and a channel closed at the next
// write.
func (s *syncBuffer) snapshot() (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.more == nil {
		s.more = make(chan struct{})
	}
	return s.b.String(), s.more
}

// await waits until what was written satisfies ok, waking at each write;
// the ceiling only turns a hang into a failure. It returns what was
// written.
func (s *syncBuffer) await(t *testing.T, what string, ok func(string) bool) string {
	t.Helper()
	limit := time.After(ceiling)
	for {
		text, more := s.snapshot()
		if ok(text) {
			return text
		}
		select {
		case <-more:
		case <-limit:
			t.Fatalf("no %s within %s in:\n%s", what, ceiling, text)
		}
	}
}

// waitFor waits until the buffer matches re and returns the first group.
func waitFor(t *testing.T, buf *syncBuffer, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	m := rx.FindStringSubmatch(buf.await(t, fmt.Sprintf("%q", re), rx.MatchString))
	if len(m) > 1 {
		return m[1]
	}
	return m[0]
}

type background struct {
	cancel context.CancelFunc
	done   chan error
	stdout *syncBuffer
	stderr *syncBuffer
}

func start(t *testing.T, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	bg := &background{cancel: cancel, done: make(chan error, 1), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	go func() { bg.done <- run(ctx, args, bg.stdout, bg.stderr) }()
	t.Cleanup(func() { bg.stop(t) })
	return bg
}

// wait waits for the command to end by itself and returns its error.
func (bg *background) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-bg.done:
		bg.done <- err // for the cleanup
		return err
	case <-time.After(ceiling):
		t.Fatal("the command did not end")
		return nil
	}
}

func (bg *background) stop(t *testing.T) error {
	bg.cancel()
	select {
	case err := <-bg.done:
		bg.done <- err
		return err
	case <-time.After(ceiling):
		t.Error("command did not stop on cancel")
		return nil
	}
}

func runCmd(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	return exitCode(err), stdout.String(), stderr.String()
}

// TestVaultCommands runs the vault double, checks a line against it, runs
// the line's recording proxy, registers a snapd-like device through it and
// reads the recorded serial back as a verified assertion stream.
func TestVaultCommands(t *testing.T) {
	dir := t.TempDir()
	key, err := serialvault.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := key.MarshalPEM()
	keyFile := filepath.Join(dir, "vault.pem")
	pubFile := filepath.Join(dir, "vault-key.pub")
	os.WriteFile(keyFile, pemBytes, 0o600)
	os.WriteFile(filepath.Join(dir, "api.key"), []byte("the-model-key\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "wrong.key"), []byte("not-the-key\n"), 0o600)

	vault := start(t, "vault", "serve", "--listen", "127.0.0.1:0", "--brand", "acme", "--model", "acme-gw-armhf",
		"--api-key", "the-model-key", "--key", keyFile, "--export-key", pubFile)
	vaultAddr := waitFor(t, vault.stdout, `vault listening on http://([0-9.:]+)/`)
	if exported, err := os.ReadFile(pubFile); err != nil || strings.TrimSpace(string(exported)) != key.Public().Encode() {
		t.Fatalf("exported key: %v", err)
	}

	repo, _ := filepath.Abs("../..")
	station := fmt.Sprintf(`station: {id: bench-t, data-dir: data}
lines:
  - id: line1
    model: %[1]s/configs/assets/acme-gw-armhf.model
    brand-keys: [vault-key.pub]
    image: {file: %[1]s/configs/assets/acme-gw-armhf.img.xz}
    vault: {url: "http://%[2]s/v1/", api-key: {file: api.key}}
    proxy: {listen: "127.0.0.1:18181"}
  - id: wrongkey
    model: %[1]s/configs/assets/acme-gw-armhf.model
    brand-keys: [vault-key.pub]
    image: {file: %[1]s/configs/assets/acme-gw-armhf.img.xz}
    vault: {url: "http://%[2]s/v1/", api-key: {file: wrong.key}}
    proxy: {listen: "127.0.0.1:18182"}
slots:
  - {id: A1, line: line1, usb-ports: ["1-1"], method: ums, console: {port: /dev/ttyUSB0}}
  - {id: B1, line: wrongkey, usb-ports: ["1-2"], method: ums, console: {port: /dev/ttyUSB1}}
`, repo, vaultAddr)
	cfg := filepath.Join(dir, "station.yaml")
	os.WriteFile(cfg, []byte(station), 0o644)

	code, out, errOut := runCmd("vault", "check", "--config", cfg, "--line", "line1")
	if code != 0 || !strings.Contains(out, "ok   the vault accepts the line's api-key") || !strings.Contains(out, "version 2.9-double") {
		t.Errorf("vault check: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCmd("vault", "check", "--config", cfg, "--line", "wrongkey")
	if code != 1 || !strings.Contains(out, "FAIL the vault refused the line's api-key (invalid-api-key)") || strings.Contains(out, "not-the-key") {
		t.Errorf("wrong api-key: %d\n%s", code, out)
	}
	if code, _, errOut := runCmd("vault", "check", "--config", cfg, "--line", "line9"); code != 2 || !strings.Contains(errOut, "line9") {
		t.Errorf("unknown line: %d %s", code, errOut)
	}

	// The standalone proxy signs only what it is told to expect.
	if code, _, errOut := runCmd("vault", "proxy", "--config", cfg, "--line", "line1", "--listen", "127.0.0.1:0"); code != 2 || !strings.Contains(errOut, "--expect") {
		t.Errorf("proxy without expected serials: %d %s", code, errOut)
	}
	proxy := start(t, "vault", "proxy", "--config", cfg, "--line", "line1", "--listen", "127.0.0.1:0", "--expect", "CLI-0001")
	proxyURL := waitFor(t, proxy.stderr, `listening on (http://[0-9.:]+/v1/)`)
	dev, _ := serialvault.GenerateKey(2048)
	model, _ := serialvault.Decode(mustRead(t, repo+"/configs/assets/acme-gw-armhf.model"))
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	other := &vaulttest.Device{Key: dev, Model: model, Serial: "CLI-0002", URL: proxyURL, MaxFailures: 1}
	if _, err := other.Register(ctx); err == nil || !strings.Contains(err.Error(), "status 403") {
		t.Errorf("an unexpected serial: %v", err)
	}
	d := &vaulttest.Device{Key: dev, Model: model, Serial: "CLI-0001", URL: proxyURL, MaxFailures: 1}
	if _, err := d.Register(ctx); err != nil {
		t.Fatalf("register through the proxy: %v\n%s", err, proxy.stderr.String())
	}
	waitFor(t, proxy.stdout, `recorded acme/acme-gw-armhf serial CLI-0001 revision 1 device-key `+regexp.QuoteMeta(dev.Public().ID()))
	// Once: a second identity for CLI-0001 is refused.
	dev2, _ := serialvault.GenerateKey(2048)
	again := &vaulttest.Device{Key: dev2, Model: model, Serial: "CLI-0001", URL: proxyURL, MaxFailures: 1}
	if _, err := again.Register(ctx); err == nil || !strings.Contains(err.Error(), "status 409") {
		t.Errorf("a second identity: %v", err)
	}
	if err := proxy.stop(t); err != nil {
		t.Errorf("proxy ended with %v", err)
	}

	code, stream, errOut := runCmd("assertions", "--config", cfg, "--serial", "CLI-0001")
	if code != 0 || !strings.HasPrefix(stream, "type: serial\n") || !strings.Contains(errOut, "1 serial assertion") {
		t.Fatalf("assertions: %d %s %s", code, stream, errOut)
	}
	streamFile := filepath.Join(dir, "recorded.assert")
	os.WriteFile(streamFile, []byte(stream), 0o644)
	code, out, _ = runCmd("assertion", "verify", "--key", pubFile, streamFile)
	if code != 0 || !strings.Contains(out, "serial acme/acme-gw-armhf/CLI-0001 (revision 1), signed by key") {
		t.Errorf("verify recorded: %d %s", code, out)
	}
	if code, out, _ = runCmd("assertion", "verify", streamFile); code != 1 || !strings.Contains(out, "not trusted") {
		t.Errorf("verify without key: %d %s", code, out)
	}
	if code, out, errOut := runCmd("assertions", "--config", cfg, "--since", "1h", "--line", "wrongkey"); code != exitNoMatch || out != "" ||
		!strings.Contains(errOut, "no serial assertion in the ledger") || !strings.Contains(errOut, "line wrongkey") {
		t.Errorf("assertions matching nothing: %d %q %s", code, out, errOut)
	}

	// The vault stops: check says so.
	vault.stop(t)
	code, out, _ = runCmd("vault", "check", "--config", cfg, "--line", "line1")
	if code != 1 || !strings.Contains(out, "does not answer") {
		t.Errorf("vault down: %d\n%s", code, out)
	}
	// Logs went to the data directory, without the api-key.
	logData := mustRead(t, filepath.Join(dir, "data", "logs", "flashstation.log"))
	if !bytes.Contains(logData, []byte("serial assertion recorded")) || bytes.Contains(logData, []byte("the-model-key")) {
		t.Errorf("log file:\n%s", logData)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"8h", now.Add(-8 * time.Hour), true},
		{"2026-11-28T08:00:00Z", time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC), true},
		{"yesterday", time.Time{}, false},
	} {
		got, err := parseSince(tc.in, now)
		if (err == nil) != tc.ok || (tc.ok && !got.Equal(tc.want)) {
			t.Errorf("parseSince(%q) = %v, %v", tc.in, got, err)
		}
	}
	if got, err := parseSince("2026-11-28", now); err != nil || got.Day() != 28 {
		t.Errorf("date: %v %v", got, err)
	}
}

// TestVaultCheckDatabaseDown: a vault whose database is down refuses every
// api-key; vault check says the database is down, not that the key is
// wrong.
func TestVaultCheckDatabaseDown(t *testing.T) {
	dir := t.TempDir()
	repo, _ := filepath.Abs("../..")
	key, err := serialvault.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	v := vaulttest.New(vaulttest.Options{Models: []vaulttest.Model{{BrandID: "acme", Model: "acme-gw-armhf", APIKey: "the-model-key", Key: key}}})
	srv := httptest.NewServer(v.Handler())
	defer srv.Close()
	os.WriteFile(filepath.Join(dir, "api.key"), []byte("the-model-key\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "brand.pub"), []byte(key.Public().Encode()+"\n"), 0o644)
	l := &lines.Line{ID: "line1", Model: repo + "/configs/assets/acme-gw-armhf.model", BrandKeys: []string{filepath.Join(dir, "brand.pub")},
		Vault: lines.Vault{URL: srv.URL + "/v1/", APIKey: lines.SecretRef{File: filepath.Join(dir, "api.key")}}}
	var out bytes.Buffer
	if err := vaultCheck(context.Background(), l, &out); err != nil || !strings.Contains(out.String(), "ok   the vault reaches its database") {
		t.Fatalf("healthy: %v\n%s", err, out.String())
	}
	v.SetDatabaseDown(true)
	out.Reset()
	err = vaultCheck(context.Background(), l, &out)
	if err == nil || !strings.Contains(out.String(), "FAIL the vault's database is down") || strings.Contains(out.String(), "refused the line's api-key") {
		t.Errorf("database down: %v\n%s", err, out.String())
	}
}
