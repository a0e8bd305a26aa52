package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/ledger"
)

// imageBench is signedBench with a second batch, started with an image
// identity, holding one passed board: HW-IMG (serial SIM00003, without a
// recorded assertion). SIM00001 and SIM00002 are of a batch started
// before the identity gate.
func imageBench(t *testing.T, label string) (config, ledgerPath string, batch int64) {
	t.Helper()
	config, ledgerPath = signedBench(t)
	ctx := context.Background()
	led, err := ledger.Open(ctx, ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	batch, err = led.StartBatch(ctx, ledger.Batch{LineID: "line1", Planned: 1, ImageSHA256: "feedbeef",
		ModelDigest: "digest-" + label, SeedLabel: label, ModelSignKey: "signkey-" + label})
	if err != nil {
		t.Fatal(err)
	}
	u, err := led.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "A1", HWSerial: "HW-IMG"})
	if err != nil {
		t.Fatal(err)
	}
	if err := led.UpdateUnit(ctx, u, ledger.UnitProgress{Serial: "SIM00003"}); err != nil {
		t.Fatal(err)
	}
	if err := led.FinishUnit(ctx, u, ledger.UnitPass, "", ""); err != nil {
		t.Fatal(err)
	}
	return config, ledgerPath, batch
}

// TestEvidenceShowsImageIdentity: logs, export (csv and json) and the QA
// bundle show each unit with the image identity of its batch, and an old
// batch as one without it.
func TestEvidenceShowsImageIdentity(t *testing.T) {
	for _, label := range []string{"20261202", ""} { // UC20+, UC16/18
		t.Run("label "+label, func(t *testing.T) {
			config, _, _ := imageBench(t, label)
			shown := label
			if shown == "" {
				shown = "none (UC16/UC18)"
			}
			for _, tc := range []struct {
				serial string
				want   []string
			}{
				{"HW-IMG", []string{"model digest digest-" + label + ", seed label " + shown + ", model sign key signkey-" + label,
					"image sha256 feedbeef"}},
				{"SIM00001", []string{"image: identity not recorded (batch started before the image identity gate)"}},
			} {
				code, out, errOut := runArgs("logs", tc.serial, "--config", config)
				for _, w := range tc.want {
					if code != exitOK || !strings.Contains(out, w) {
						t.Errorf("logs %s: %d, want %q in\n%s\n%s", tc.serial, code, w, out, errOut)
					}
				}
			}

			if code, out, errOut := runArgs("ledger", "verify", "--config", config); code != exitOK || !strings.Contains(out, "2 batch seals intact") {
				t.Errorf("ledger verify: %d\n%s\n%s", code, out, errOut)
			}
			code, out, errOut := runArgs("export", "--config", config)
			if code != exitOK {
				t.Fatalf("export: %d %s", code, errOut)
			}
			records, err := csv.NewReader(strings.NewReader(out)).ReadAll()
			if err != nil || len(records) != 4 {
				t.Fatalf("export csv: %v\n%s", err, out)
			}
			col := map[string]int{}
			for i, name := range records[0] {
				col[name] = i
			}
			want := map[string][3]string{"HW-IMG": {"digest-" + label, label, "signkey-" + label}, "HW-SIM00001": {}, "HW-SIM00002": {}}
			for _, r := range records[1:] {
				got := [3]string{r[col["model_digest"]], r[col["seed_label"]], r[col["model_sign_key"]]}
				if w, ok := want[r[col["hardware_serial"]]]; !ok || got != w || len(r) != len(records[0]) {
					t.Errorf("export csv row %v: identity %q, want %q", r, got, w)
				}
			}
			if h := strings.Join(records[0], ","); !strings.HasSuffix(h, ",batch_uid,model_digest,seed_label,model_sign_key") {
				t.Errorf("export csv header %s", h)
			}

			code, out, _ = runArgs("export", "--config", config, "--format", "json")
			var rows []map[string]any
			if code != exitOK || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 3 {
				t.Fatalf("export json: %d\n%s", code, out)
			}
			for _, r := range rows {
				w := want[r["hardware_serial"].(string)]
				for i, k := range []string{"model_digest", "seed_label", "model_sign_key"} {
					if v, ok := r[k]; !ok || v != w[i] {
						t.Errorf("export json %s of %v: %v, want %q", k, r["hardware_serial"], v, w[i])
					}
				}
			}

			bundle := filepath.Join(t.TempDir(), "qa.tar.gz")
			if code, _, errOut := runArgs("logs", "HW-IMG", "--config", config, "--bundle", bundle); code != exitOK {
				t.Fatalf("logs --bundle: %d %s", code, errOut)
			}
			doc := bundleUnitJSON(t, bundle)
			im := doc["image"]
			if im["model_digest"] != "digest-"+label || im["seed_label"] != label || im["model_sign_key"] != "signkey-"+label ||
				im["image_sha256"] != "feedbeef" || len(im["image_seal"]) != 64 {
				t.Errorf("bundle unit.json image: %v", im)
			}
		})
	}
}

// bundleUnitJSON is the image part of a bundle unit.json.
func bundleUnitJSON(t *testing.T, path string) map[string]map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatal("the bundle has no unit.json")
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "unit.json" {
			var doc struct {
				Image map[string]string `json:"image"`
			}
			if err := json.NewDecoder(tr).Decode(&doc); err != nil {
				t.Fatal(err)
			}
			return map[string]map[string]string{"image": doc.Image}
		}
	}
}

// TestEvidenceRefusesChangedSeedLabel: a seed label changed past the
// dropped guard is tampering: logs and export refuse (exit 1) and name the
// batch, as ledger verify does.
func TestEvidenceRefusesChangedSeedLabel(t *testing.T) {
	config, path, batch := imageBench(t, "20261202")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TRIGGER batches_keep_image`, `UPDATE batches SET seed_label = '20250101' WHERE id = 2`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	why := fmt.Sprintf("batches row %d: image_seal does not cover the batch as it is", batch)
	for _, tc := range []struct {
		args []string
		leak string // what it must not print: the records
	}{
		{[]string{"ledger", "verify"}, "verified"},
		{[]string{"logs", "HW-IMG"}, "timeline:"},
		{[]string{"export"}, "hardware_serial"},
		{[]string{"export", "--format", "json"}, "hardware_serial"},
	} {
		code, out, errOut := runArgs(append(tc.args, "--config", config)...)
		if code != exitVerdict || !strings.Contains(errOut+out, why) || strings.Contains(out, tc.leak) {
			t.Errorf("%v: %d, want exit 1 naming %q\n%s\n%s", tc.args, code, why, out, errOut)
		}
	}
}
