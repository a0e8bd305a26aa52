package serialvault_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/flashstation/flashstation/internal/yamlbound"
	"github.com/flashstation/flashstation/serialvault"
)

func addVectorSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/vectors/*.txt")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("type: a\nl:\n  -\n    k:\n      - x\nsign-key-sha3-384: k\n\nAQ==\n"))
	f.Add([]byte("type: a\nbody-length: 3\nsign-key-sha3-384: k\n\n\n\n\n\n\nAQ==\n"))
}

// FuzzDecode: Decode never panics, and whatever it accepts re-encodes to
// something that decodes to the same encoding (the codec is stable).
func FuzzDecode(f *testing.F) {
	addVectorSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := serialvault.Decode(data)
		if err != nil {
			return
		}
		enc := a.Encode()
		b, err := serialvault.Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded assertion does not decode: %v\n%q", err, enc)
		}
		if !bytes.Equal(b.Encode(), enc) {
			t.Fatalf("encoding not stable:\n%q\n%q", enc, b.Encode())
		}
		_ = a.String()
		_, _ = a.SignatureTime()
		_, _ = serialvault.AsSerial(a)
		_, _ = serialvault.AsModel(a)
		_, _ = serialvault.AsAccountKey(a)
		_, _ = serialvault.AsSerialRequest(a)
	})
}

// FuzzDecodeStream: the stream decoder never panics and never returns more
// assertions than there are blank-line-separated chunks could hold.
func FuzzDecodeStream(f *testing.F) {
	addVectorSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		as, _ := serialvault.DecodeStream(data)
		if len(as) > bytes.Count(data, []byte("\n\n"))+1 {
			t.Fatalf("%d assertions from %d bytes", len(as), len(data))
		}
		for _, a := range as {
			if a.Type() == "" || a.SignKeyID() == "" {
				t.Fatalf("decoded assertion without type or key: %v", a)
			}
		}
	})
}

// FuzzDecodePublicKey: never panics; accepted keys re-encode and keep their id.
func FuzzDecodePublicKey(f *testing.F) {
	if b, err := os.ReadFile("testdata/vectors/acme-brand-key.pub"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := serialvault.DecodePublicKey(data)
		if err != nil {
			return
		}
		k2, err := serialvault.DecodePublicKey([]byte(k.Encode()))
		if err != nil || k2.ID() != k.ID() {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

// FuzzScanBodySerial: the scan never panics; a serial it accepts is in the
// strict form, and a YAML decoder reading the same body (when it can)
// finds that very string under the top-level serial key.
func FuzzScanBodySerial(f *testing.F) {
	for _, s := range []string{"serial: A-1\n", "mac: x\nserial: 'A-2' # c\n", "serial: 12\n", "x:\n  serial: y\nserial: z\n",
		"---\nserial: \"Q\"\n", "serial: *a\n", "{serial: x}\n", "serial: A-1\r\nserial: B\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := serialvault.ScanBodySerial(body)
		if err != nil || s == "" {
			return
		}
		if !serialvault.ValidSerial(s) {
			t.Fatalf("accepted %q", s)
		}
		var doc map[string]any
		if yamlbound.Decode("body", body, &doc, yamlbound.Limits{What: "body", MaxBytes: 1 << 20}) != nil {
			return
		}
		if got, ok := doc["serial"].(string); !ok || got != s {
			t.Fatalf("scan %q, YAML decoder %#v", s, doc["serial"])
		}
	})
}
