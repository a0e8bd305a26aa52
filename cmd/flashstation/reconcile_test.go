package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/ledger/pgtest"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

// TestReconcileCommand: the ledger and the double's signing log agree;
// then the vault signs a serial for a device key that passed through the
// station which the ledger never got: reconcile says so and exits 1.
func TestReconcileCommand(t *testing.T) {
	dir := t.TempDir()
	repo, _ := filepath.Abs("../..")
	key, err := serialvault.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	v := vaulttest.New(vaulttest.Options{AdminUsers: map[string]string{"station": "admin-key"},
		Models: []vaulttest.Model{{BrandID: "acme", Model: "acme-gw-armhf", APIKey: "the-model-key", Key: key}}})
	dev := httptest.NewServer(v.Handler())
	defer dev.Close()
	admin := httptest.NewServer(v.AdminHandler())
	defer admin.Close()
	os.WriteFile(filepath.Join(dir, "api.key"), []byte("the-model-key\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "admin.key"), []byte("admin-key\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "vault-key.pub"), []byte(key.Public().Encode()+"\n"), 0o644)
	cfg := filepath.Join(dir, "station.yaml")
	os.WriteFile(cfg, []byte(`station: {id: bench-r, data-dir: data}
lines:
  - id: line1
    model: `+repo+`/configs/assets/acme-gw-armhf.model
    brand-keys: [vault-key.pub]
    image: {file: `+repo+`/configs/assets/acme-gw-armhf.img.xz}
    vault:
      url: "`+dev.URL+`/v1/"
      api-key: {file: api.key}
      signing-log: {url: "`+admin.URL+`/", user: station, key: {file: admin.key}}
    proxy: {listen: "127.0.0.1:18383"}
slots:
  - {id: A1, line: line1, usb-ports: ["1-1"], method: ums, console: {port: /dev/ttyUSB0}}
`), 0o644)
	model, _ := serialvault.Decode(mustRead(t, repo+"/configs/assets/acme-gw-armhf.model"))
	devKey := vaulttest.TestKey(1)
	register := func(serial string) *serialvault.Serial {
		d := &vaulttest.Device{Key: devKey, Model: model, Serial: serial, URL: dev.URL + "/v1/", Headers: map[string]string{"api-key": "the-model-key"}, MaxFailures: 1}
		res, err := d.Register(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return res.Serial
	}
	// One serial signed and recorded, as the proxy would.
	s := register("REC-1")
	st, err := loadStation(cfg, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	led, err := openLedger(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := led.RecordSerialAssertion(context.Background(), ledger.SerialAssertion{Text: s.Encode(), BrandID: s.BrandID, Model: s.Model,
		Serial: s.Serial, Revision: s.Revision(), DeviceKeyID: s.DeviceKeyID, LineID: "line1", Via: ledger.ViaProxy}); err != nil {
		t.Fatal(err)
	}
	led.Close()
	if code, out, errOut := runCmd("reconcile", "--config", cfg); code != 0 || !strings.Contains(out, "1 matched: agree") {
		t.Fatalf("agree: %d %s %s", code, out, errOut)
	}
	// The vault signs again for that device key; the station never records it.
	register("LOST-1")
	code, out, _ := runCmd("reconcile", "--config", cfg)
	if code != exitVerdict || !strings.Contains(out, "DISAGREE: 1 difference") || !strings.Contains(out, "not-in-ledger serial LOST-1") {
		t.Errorf("disagree: %d %s", code, out)
	}
	code, out, _ = runCmd("reconcile", "--config", cfg, "--json")
	if code != exitVerdict || !strings.Contains(out, `"kind": "not-in-ledger"`) {
		t.Errorf("json: %d %s", code, out)
	}
	if code, _, errOut := runCmd("reconcile", "--config", cfg, "--line", "nope"); code != exitUsage || !strings.Contains(errOut, "nope") {
		t.Errorf("unknown line: %d %s", code, errOut)
	}

	// The factory ledger holds every bench of the line: LOST-1 was
	// recorded by another bench of line1 (the board went there), so the
	// line's vault and the factory agree where this bench alone cannot.
	c := pgtest.Start(t)
	ctx := context.Background()
	fac, err := ledger.OpenFactory(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer fac.Close()
	id, _ := fac.FactoryID(ctx)
	other, err := ledger.Open(ctx, filepath.Join(dir, "other", ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.EnsureStation(ctx, ledger.Station{ID: "bench-r2"})
	other.EnsureLine(ctx, ledger.Line{ID: "line1", StationID: "bench-r2", BrandID: "acme", Model: "acme-gw-armhf"})
	lost := register("LOST-2") // a new revision of the same device's serial: the vault's log has it too
	for _, sa := range []*serialvault.Serial{lost} {
		if _, _, err := other.RecordSerialAssertion(ctx, ledger.SerialAssertion{Text: sa.Encode(), BrandID: sa.BrandID, Model: sa.Model,
			Serial: sa.Serial, Revision: sa.Revision(), DeviceKeyID: sa.DeviceKeyID, LineID: "line1", Via: ledger.ViaProxy}); err != nil {
			t.Fatal(err)
		}
	}
	bench, err := ledger.Open(ctx, filepath.Join(dir, "data", ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct {
		l       *ledger.Ledger
		station string
	}{{bench, "bench-r"}, {other, "bench-r2"}} {
		if _, err := b.l.EnableForwarding(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := b.l.Forward(ctx, fac, b.station, 1000); err != nil {
			t.Fatal(err)
		}
	}
	bench.Close()
	urlFile := filepath.Join(dir, "factory.url")
	os.WriteFile(urlFile, []byte(c.URL), 0o600)
	code, out, errOut := runCmd("reconcile", "--config", cfg, "--ledger", "file:"+urlFile)
	if code != exitVerdict || !strings.Contains(out, "not-in-ledger serial LOST-1") || strings.Contains(out, "LOST-2") {
		t.Errorf("reconcile --ledger, LOST-1 nowhere: %d %s %s", code, out, errOut)
	}
	// The board that LOST-1 was signed for went through bench-r2 too.
	s1 := register("LOST-3")
	if _, _, err := other.RecordSerialAssertion(ctx, ledger.SerialAssertion{Text: s1.Encode(), BrandID: s1.BrandID, Model: s1.Model,
		Serial: s1.Serial, Revision: s1.Revision(), DeviceKeyID: s1.DeviceKeyID, LineID: "line1", Via: ledger.ViaProxy}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Forward(ctx, fac, "bench-r2", 1000); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCmd("reconcile", "--config", cfg); code != exitVerdict || !strings.Contains(out, "LOST-2") || !strings.Contains(out, "LOST-3") {
		t.Errorf("the bench alone misses what bench-r2 recorded: %d %s", code, out)
	}
	if code, out, _ := runCmd("reconcile", "--config", cfg, "--ledger", "file:"+urlFile); strings.Contains(out, "LOST-2") || strings.Contains(out, "LOST-3") {
		t.Errorf("the factory ledger holds bench-r2's serials: %d %s", code, out)
	}
}
