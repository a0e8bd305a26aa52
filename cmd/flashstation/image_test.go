package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flashstation/flashstation/internal/seedimage"
	"github.com/flashstation/flashstation/seed"
	"github.com/flashstation/flashstation/serialvault"
)

var (
	inspectKeyOnce sync.Once
	inspectKey     *serialvault.PrivateKey
	inspectKeyErr  error
)

// brandKey is a brand key made once for the inspect tests: the line's
// brand "acme" signs its models with it.
func brandKey(t *testing.T) *serialvault.PrivateKey {
	t.Helper()
	inspectKeyOnce.Do(func() { inspectKey, inspectKeyErr = serialvault.GenerateKey(2048) })
	if inspectKeyErr != nil {
		t.Fatal(inspectKeyErr)
	}
	return inspectKey
}

// model20 is a UC20+ model of brand acme, changed by over.
func model20(t *testing.T, key *serialvault.PrivateKey, over map[string]any) []byte {
	t.Helper()
	h := map[string]any{
		"type": "model", "authority-id": "acme", "series": "16", "brand-id": "acme", "model": "acme-gw-armhf",
		"architecture": "armhf", "base": "core22", "grade": "signed", "timestamp": "2026-01-01T00:00:00Z",
		"snaps": []any{
			map[string]any{"name": "acme-gadget", "id": "AcmeGadgetSnapId0000000000000001", "type": "gadget", "default-channel": "22/stable"},
			map[string]any{"name": "pi-kernel", "id": "jeIuP6tfFrvAdic8DMWqHmoaoukAPNbJ", "type": "kernel", "default-channel": "22/stable"},
			map[string]any{"name": "core22", "id": "amcUKQILKXHHTlmSa7NMdnXSx02dNeeT", "type": "base", "default-channel": "latest/stable"},
		},
	}
	return signHeaders(t, key, h, over)
}

// model18 is a UC18 model of brand acme (gadget and kernel headers).
func model18(t *testing.T, key *serialvault.PrivateKey) []byte {
	t.Helper()
	return signHeaders(t, key, map[string]any{
		"type": "model", "authority-id": "acme", "series": "16", "brand-id": "acme", "model": "acme-gw18",
		"architecture": "armhf", "base": "core18", "gadget": "acme-pi=18", "kernel": "pi-kernel=18",
		"timestamp": "2026-01-01T00:00:00Z",
	}, nil)
}

func signHeaders(t *testing.T, key *serialvault.PrivateKey, h, over map[string]any) []byte {
	t.Helper()
	for k, v := range over {
		h[k] = v
	}
	a, err := serialvault.Sign(h, nil, key, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return a.Encode()
}

// readShared reads a real signed example from the shared test data.
func readShared(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../../shared/testdata/assertions", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// inspectStation writes a station file whose line gw-1 wants model (and
// trusts the brand key) and returns its path.
func inspectStation(t *testing.T, dir string, model, brandPub []byte, image string) string {
	t.Helper()
	files := map[string][]byte{
		"line.model": model, "brand.pub": brandPub, "api.key": []byte("k\n"),
		"station.yaml": []byte(fmt.Sprintf(`station:
  id: bench-t
  data-dir: data
lines:
  - id: gw-1
    model: line.model
    brand-keys: [brand.pub]
    image: {file: %q}
    vault: {url: "http://127.0.0.1:9/v1/", api-key: {file: api.key}}
    proxy: {listen: "127.0.0.1:18181"}
slots:
  - {id: A1, line: gw-1, usb-ports: ["1-1.2"], method: ums, console: {port: /dev/ttyUSB0}}
`, image)),
	}
	for name, b := range files {
		mode := os.FileMode(0o644)
		if name == "api.key" {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "station.yaml")
}

// TestImageInspect builds real images with Debian's tools (seedimage) and
// inspects each against a line, as text and as JSON: the matching UC20+
// and UC18 images pass, each other case is refused with its cause and the
// words an operator sees.
func TestImageInspect(t *testing.T) {
	if err := seedimage.Available(); err != nil {
		t.Skip(err)
	}
	key := brandKey(t)
	other, err := serialvault.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	line20 := model20(t, key, nil)
	gadget := func() *seedimage.Gadget { return &seedimage.Gadget{Name: "acme-gadget"} }
	tampered := bytes.Replace(line20, []byte("timestamp: 2026-01-01T00:00:00Z"), []byte("timestamp: 2026-01-02T00:00:00Z"), 1)
	if bytes.Equal(tampered, line20) {
		t.Fatal("the tampered model is the model")
	}
	snaps := []string{"pi-kernel", "core22"}
	acmeReal, acmeKey := readShared(t, "10-model-acme-uc22.txt"), readShared(t, "acme-brand-key.pub")
	piReal := readShared(t, "08-model-uc22-pi-armhf.real.txt")
	for _, tc := range []struct {
		name  string
		line  []byte // the line's model (default line20)
		pub   []byte // the line's brand key (default key's)
		spec  seedimage.Spec
		cause string // "" passes
		text  string // in the text report
	}{
		{name: "uc20 passes", spec: seedimage.Spec{Model: line20, Gadget: gadget(), Snaps: snaps}, text: "verdict  PASS for line gw-1"},
		{name: "uc18 passes", line: model18(t, key),
			spec: seedimage.Spec{Kind: seedimage.KindUC16, Table: "mbr", Model: model18(t, key), Gadget: &seedimage.Gadget{Name: "acme-pi"}, Snaps: []string{"pi-kernel", "core18"}},
			text: "verdict  PASS for line gw-1"},
		{name: "another model", spec: seedimage.Spec{Model: model20(t, key, map[string]any{"model": "acme-hub-armhf"}), Gadget: gadget(), Snaps: snaps},
			cause: seed.CauseModelMismatch, text: "acme-hub-armhf"},
		{name: "another brand", spec: seedimage.Spec{Model: model20(t, other, map[string]any{"authority-id": "umbrella", "brand-id": "umbrella"}), Gadget: gadget(), Snaps: snaps},
			cause: seed.CauseModelMismatch, text: "umbrella"},
		{name: "tampered model", spec: seedimage.Spec{Model: tampered, Gadget: gadget(), Snaps: snaps},
			cause: seed.CauseSignature, text: "image-model-signature"},
		{name: "dangerous grade", line: model20(t, key, map[string]any{"grade": "dangerous"}),
			spec:  seedimage.Spec{Model: model20(t, key, map[string]any{"grade": "dangerous"}), Gadget: gadget(), Snaps: snaps},
			cause: seed.CauseDangerous, text: "dangerous grade"},
		{name: "no prepare-device hook", spec: seedimage.Spec{Model: line20, Gadget: &seedimage.Gadget{Name: "acme-gadget", Hooks: []string{"configure"}}, Snaps: snaps},
			cause: seed.CauseGadgetHook, text: "no meta/hooks/prepare-device (its hooks: configure)"},
		{name: "real acme model passes", line: acmeReal, pub: acmeKey, spec: seedimage.Spec{Model: acmeReal, Gadget: gadget(), Snaps: snaps},
			text: "verdict  PASS for line gw-1"},
		{name: "real model of another brand", line: acmeReal, pub: acmeKey, spec: seedimage.Spec{Model: piReal, Gadget: &seedimage.Gadget{Name: "pi"}, Snaps: snaps},
			cause: seed.CauseModelMismatch, text: `brand-id: the image has "canonical", the line wants "acme"`},
		{name: "gadget volumes disagree", spec: seedimage.Spec{Model: line20, Snaps: snaps, Gadget: &seedimage.Gadget{Name: "acme-gadget", GadgetYAML: []byte(
			"volumes:\n  pi:\n    schema: gpt\n    structure:\n      - {name: ubuntu-seed, role: system-seed, filesystem: vfat, type: C12A7328-F81F-11D2-BA4B-00A0C93EC93B, offset: 4M, size: 1200M}\n")}},
			cause: seed.CauseGadgetVolumes, text: "starts at byte 4194304 in gadget.yaml, partition 1 starts at 1048576"},
		{name: "no seed", spec: seedimage.Spec{NoSeed: true}, cause: seed.CauseNoSeed, text: "seed     none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "image.img")
			if err := seedimage.Build(context.Background(), img, tc.spec); err != nil {
				t.Fatal(err)
			}
			lineModel := tc.line
			if lineModel == nil {
				lineModel = line20
			}
			pub := tc.pub
			if pub == nil {
				pub = []byte(key.Public().Encode() + "\n")
			}
			conf := inspectStation(t, dir, lineModel, pub, "image.img")
			want := 0
			if tc.cause != "" {
				want = exitVerdict
			}
			var out, errb bytes.Buffer
			err := run(context.Background(), []string{"image", "inspect", "--config", conf, "--line", "gw-1"}, &out, &errb)
			if got := exitCode(err); got != want {
				t.Fatalf("exit %d, want %d (%v)\n%s%s", got, want, err, out.String(), errb.String())
			}
			t.Logf("image inspect:\n%s", out.String())
			if !strings.Contains(out.String(), tc.text) {
				t.Errorf("the report lacks %q:\n%s", tc.text, out.String())
			}
			if tc.cause != "" {
				if !strings.Contains(out.String(), "verdict  REFUSED for line gw-1: image-refused ("+tc.cause+")") {
					t.Errorf("the report does not refuse with %s:\n%s", tc.cause, out.String())
				}
			}
			out.Reset()
			errb.Reset()
			err = run(context.Background(), []string{"image", "inspect", "--json", "--config", conf, "--line", "gw-1", img}, &out, &errb)
			if got := exitCode(err); got != want {
				t.Fatalf("--json: exit %d, want %d (%v)", got, want, err)
			}
			var rep imageReport
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("--json: %v\n%s", err, out.String())
			}
			if rep.Verdict == nil || rep.Verdict.Pass != (tc.cause == "") || rep.Verdict.Cause != tc.cause || !rep.Checked || rep.Line != "gw-1" {
				t.Fatalf("--json verdict %+v", rep.Verdict)
			}
			if tc.cause == "" {
				s := rep.Image.Seed
				a, err := serialvault.Decode(tc.spec.Model)
				if err != nil {
					t.Fatal(err)
				}
				if s == nil || rep.Verdict.Identity.ModelDigest != seed.Digest(tc.spec.Model) || rep.Verdict.Identity.SignKey != a.SignKeyID() {
					t.Errorf("--json identity %+v, want the image's model digest and key %s", rep.Verdict.Identity, a.SignKeyID())
				}
				if tc.spec.Kind != seedimage.KindUC16 && (s == nil || s.Label != seedimage.DefaultLabel || rep.Verdict.Identity.SeedLabel != seedimage.DefaultLabel) {
					t.Errorf("--json seed label %+v, want %s", rep.Verdict.Identity, seedimage.DefaultLabel)
				}
			}
		})
	}
}

// TestImageInspectNotAFile: a named pipe (or a directory) given as the
// image is refused at once as a usage error; opening the pipe would wait
// for a writer that never comes.
func TestImageInspectNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.img")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip(err)
	}
	for _, path := range []string{fifo, dir} {
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{"image", "inspect", path}, &out, &errb)
		if got := exitCode(err); got != exitUsage || !strings.Contains(errb.String()+fmt.Sprint(err), "is not a file") {
			t.Errorf("%s: exit %d (%v) %s", path, got, err, errb.String())
		}
	}
}
