package serialvault_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

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
