package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

// signedBench is a station whose line trusts a test brand key, and a
// ledger holding two passed boards, SIM00001 and SIM00002, each with its
// serial assertion signed by that key.
func signedBench(t *testing.T) (config, ledgerPath string) {
	t.Helper()
	dir := t.TempDir()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	brand := vaulttest.TestKey(0)
	keyFile := filepath.Join(dir, "brand.pub")
	config = filepath.Join(dir, "station.yaml")
	for name, content := range map[string]string{
		keyFile:                        brand.Public().Encode() + "\n",
		filepath.Join(dir, "api.key"):  "key\n",
		filepath.Join(dir, "password"): "pw\n",
		config: fmt.Sprintf(`station: {id: bench-s, data-dir: data}
lines:
  - id: line1
    model: %[1]s/configs/assets/acme-gw-armhf.model
    brand-keys: [%[2]s]
    image: {file: %[1]s/configs/assets/acme-gw-armhf.img.xz}
    vault: {url: "http://127.0.0.1:9/v1/", api-key: {file: api.key}}
    capture: {method: console, user: factory, password: {file: password}}
slots:
  - {id: A1, line: line1, usb-ports: ["1-1"], method: ums, console: {port: /dev/ttyUSB0}}
`, repo, keyFile),
	} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	ledgerPath = filepath.Join(dir, "data", ledger.FileName)
	led, err := ledger.Open(ctx, ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(led.EnsureStation(ctx, ledger.Station{ID: "bench-s"}))
	must(led.EnsureLine(ctx, ledger.Line{ID: "line1", StationID: "bench-s", BrandID: "acme", Model: "acme-gw-armhf"}))
	batch, err := led.StartBatch(ctx, ledger.Batch{LineID: "line1", Planned: 2})
	must(err)
	for i, serial := range []string{"SIM00001", "SIM00002"} {
		dev := vaulttest.TestKey(i + 1).Public()
		a, err := serialvault.Sign(map[string]any{"type": "serial", "authority-id": "acme", "revision": "1", "brand-id": "acme",
			"model": "acme-gw-armhf", "serial": serial, "device-key": dev.Encode(), "device-key-sha3-384": dev.ID(),
			"timestamp": "2026-12-01T10:00:00Z"}, nil, brand, time.Now())
		must(err)
		u, err := led.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "A1", HWSerial: "HW-" + serial})
		must(err)
		must(led.UpdateUnit(ctx, u, ledger.UnitProgress{Serial: serial}))
		_, _, err = led.RecordSerialAssertion(ctx, ledger.SerialAssertion{Text: a.Encode(), BrandID: "acme", Model: "acme-gw-armhf",
			Serial: serial, Revision: 1, DeviceKeyID: dev.ID(), LineID: "line1", UnitID: u, Via: ledger.ViaProxy})
		must(err)
		must(led.FinishUnit(ctx, u, ledger.UnitPass, "", ""))
	}
	return config, ledgerPath
}

func runArgs(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	return exitCode(err), stdout.String(), stderr.String()
}

func TestLedgerVerifyClean(t *testing.T) {
	config, _ := signedBench(t)
	code, out, errOut := runArgs("ledger", "verify", "--config", config)
	if code != exitOK || !strings.Contains(out, "verified: 2 serial assertions") || !strings.Contains(out, "2 signatures checked") ||
		!strings.Contains(out, "chain head: 2 rows, link ") {
		t.Fatalf("ledger verify: %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runArgs("ledger", "verify", "--config", config, "--json")
	doc := oneJSONDocument(t, out)
	var head ledger.ChainHead
	if code != exitOK || string(doc["ok"]) != "true" || json.Unmarshal(doc["chain_head"], &head) != nil || head.Rows != 2 ||
		string(doc["signatures_checked"]) != "2" || string(doc["problems"]) != "[]" {
		t.Errorf("ledger verify --json: %d\n%s", code, out)
	}
	// Exports carry the chain head of the ledger they came from.
	wantHead := fmt.Sprintf(`"chain_rows": 2,
    "chain_head": "%s"`, head.Link)
	if code, out, _ := runArgs("export", "--config", config, "--format", "json"); code != exitOK || strings.Count(out, wantHead) != 2 {
		t.Errorf("export json lacks the chain head %s:\n%s", head.Link, out)
	}
	if code, out, _ := runArgs("export", "--config", config); code != exitOK || !strings.HasSuffix(strings.SplitN(out, "\n", 2)[0], ",chain_rows,chain_head,station,uid,batch_uid,model_digest,seed_label,model_sign_key") ||
		!strings.Contains(out, ",2,"+head.Link+",bench-s,") {
		t.Errorf("export csv lacks the chain head %s:\n%s", head.Link, out)
	}
	bundle := filepath.Join(t.TempDir(), "qa.tar.gz")
	if code, _, errOut := runArgs("logs", "SIM00002", "--config", config, "--bundle", bundle); code != exitOK {
		t.Errorf("logs --bundle: %d %s", code, errOut)
	}
	for _, args := range [][]string{{"assertions", "--serial", "SIM00002"}, {"export", "--format", "json"}, {"logs", "SIM00002"}} {
		if code, out, errOut := runArgs(append(args, "--config", config)...); code != exitOK || !strings.Contains(out, "SIM00002") {
			t.Errorf("%v on a clean ledger: %d\n%s\n%s", args, code, out, errOut)
		}
	}
}

// TestLedgerVerifyAttack is issue 13's reproduction: triggers dropped,
// the two boards' assertions swapped by plain SQL. Every command that
// prints records refuses, exit 1, naming the row.
func TestLedgerVerifyAttack(t *testing.T) {
	for _, tc := range []struct {
		name string
		sql  []string
		why  string
		// printedWhy is the first problem assertions, export and logs
		// name (they check the rows they print), when it is not why.
		printedWhy string
	}{
		{name: "unit_id swapped", sql: []string{`DROP TRIGGER serial_assertions_append_only`,
			`UPDATE serial_assertions SET unit_id = 3 - unit_id`},
			why: "serial_assertions row 1 (serial SIM00001): it is linked to unit 2, whose serial is SIM00002"},
		{name: "serial and device key changed", sql: []string{`DROP TRIGGER serial_assertions_append_only`,
			`UPDATE serial_assertions SET serial = 'SIM00009', device_key_id = 'x' WHERE id = 2`},
			why: "serial_assertions row 2 (serial SIM00009): link_sha256 does not cover the row"},
		{name: "a row deleted", sql: []string{`DROP TRIGGER serial_assertions_no_delete`, `DELETE FROM serial_assertions WHERE id = 1`},
			why:        "serial_assertions row 2 (serial SIM00002): the chain starts at id 2: row 1 was deleted",
			printedWhy: "serial_assertions row 1: the row was deleted (1 rows hold ids up to 2)"},
		{name: "a trigger dropped", sql: []string{`DROP TRIGGER units_no_delete`}, why: "trigger units_no_delete is missing: it was dropped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config, path := signedBench(t)
			db, err := sql.Open("sqlite", path) // the ledger package registers the driver
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range tc.sql {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			db.Close()
			code, out, errOut := runArgs("ledger", "verify", "--config", config)
			if code != exitVerdict || !strings.Contains(out, "FAILS verification") || !strings.Contains(errOut, "the ledger fails verification: "+tc.why) ||
				!strings.Contains(errOut, "keep the file") {
				t.Errorf("ledger verify: %d\n%s\n%s", code, out, errOut)
			}
			code, out, _ = runArgs("ledger", "verify", "--config", config, "--json")
			doc := oneJSONDocument(t, out)
			var first ledger.Problem
			if code != exitVerdict || string(doc["ok"]) != "false" || json.Unmarshal(doc["first_problem"], &first) != nil ||
				!strings.Contains(first.String(), tc.why) {
				t.Errorf("ledger verify --json: %d %+v\n%s", code, first, out)
			}
			if tc.printedWhy == "" {
				tc.printedWhy = tc.why
			}
			for _, args := range [][]string{{"assertions"}, {"export", "--format", "json"}, {"export"}, {"logs", "SIM00002"}} {
				code, out, errOut := runArgs(append(args, "--config", config)...)
				if code != exitVerdict || strings.Contains(out, "type: serial") || strings.Contains(out, "hardware_serial") ||
					strings.Contains(out, "board HW-") || !strings.Contains(errOut, tc.printedWhy) {
					t.Errorf("%v on a tampered ledger: %d\n%s\n%s", args, code, out, errOut)
				}
				if wantsJSON(nil, args) {
					if body := errorDocument(t, out); body.Code != exitVerdict || body.Reason != reasonFailed {
						t.Errorf("%v: error document %+v", args, body)
					}
				} else if out != "" {
					t.Errorf("%v printed %s", args, out)
				}
			}
		})
	}
}

// TestLedgerVerifyUntrustedSignature: the bench fixture's assertion is
// not signed by the line's brand key.
func TestLedgerVerifyUntrustedSignature(t *testing.T) {
	f := newBenchFixture(t)
	code, _, errOut := runArgs("ledger", "verify", "--config", f.config)
	if code != exitVerdict || !strings.Contains(errOut, "serial_assertions row 1 (serial ACME-0001): signature") {
		t.Errorf("ledger verify: %d\n%s", code, errOut)
	}
}
