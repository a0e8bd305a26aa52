package serialvault_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/serialvault"
)

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/vectors", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func vectorRing(t testing.TB) *serialvault.KeyRing {
	t.Helper()
	ring := serialvault.NewKeyRing()
	for _, f := range []string{"acme-brand-key.pub", "14-account-key-canonical-root.real.txt", "12-account-key-generic-models.real.txt"} {
		if err := ring.AddData(f, readVector(t, f)); err != nil {
			t.Fatal(err)
		}
	}
	return ring
}

// TestVectors decodes every vector, re-encodes it byte for byte, checks the
// header order is the signing order, and verifies every signature whose key
// is among the vectors.
func TestVectors(t *testing.T) {
	ring := vectorRing(t)
	for _, tc := range []struct {
		file   string
		types  []string
		verify bool
	}{
		{"03-serial-request-stream.txt", []string{"serial-request", "model"}, true},
		{"04-serial-response.txt", []string{"serial"}, true},
		{"07-serial-2048-device-key.txt", []string{"serial"}, true},
		{"08-model-uc22-pi-armhf.real.txt", []string{"model"}, false},
		{"09-model-uc18-pi2.real.txt", []string{"model"}, false},
		{"10-model-acme-uc22.txt", []string{"model"}, true},
		{"11-account-generic.real.txt", []string{"account"}, true},
		{"12-account-key-generic-models.real.txt", []string{"account-key"}, true},
		{"13-model-generic-classic.real.txt", []string{"model"}, true},
		{"14-account-key-canonical-root.real.txt", []string{"account-key"}, true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data := readVector(t, tc.file)
			as, err := serialvault.DecodeStream(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(as) != len(tc.types) {
				t.Fatalf("decoded %d assertions, want %d", len(as), len(tc.types))
			}
			var again []byte
			for i, a := range as {
				if a.Type() != tc.types[i] {
					t.Errorf("assertion %d is %s, want %s", i, a.Type(), tc.types[i])
				}
				if i > 0 {
					again = append(again, '\n')
				}
				again = append(again, a.Encode()...)
				if !a.Canonical() {
					t.Errorf("%s: our encoder does not reproduce its headers", a)
				}
				if _, err := a.SignatureTime(); err != nil {
					t.Errorf("signature packet: %v", err)
				}
				// Re-signing order equals the decoded order: the vectors are canonical.
				if got, want := headerNames(a), signingOrder(t, a); got != want {
					t.Errorf("header order %s, signing order %s", got, want)
				}
				if a.Type() == "serial-request" {
					if _, err := serialvault.AsSerialRequest(a); err != nil {
						t.Errorf("serial-request: %v", err)
					}
					continue
				}
				if tc.verify {
					if _, err := ring.Verify(a); err != nil {
						t.Errorf("verify %s: %v", a, err)
					}
				}
			}
			if !bytes.Equal(again, data) {
				t.Errorf("re-encoding differs from the vector:\n%s\n---\n%s", again, data)
			}
		})
	}
}

func headerNames(a *serialvault.Assertion) string {
	var names []string
	for _, h := range a.Headers() {
		names = append(names, h.Name)
	}
	return strings.Join(names, ",")
}

// signingOrder is the header order Sign would use for a's headers, found
// by signing the same headers with a throwaway key.
func signingOrder(t *testing.T, a *serialvault.Assertion) string {
	h := map[string]any{}
	for _, hd := range a.Headers() {
		if hd.Name != "sign-key-sha3-384" && hd.Name != "body-length" {
			h[hd.Name] = hd.Value
		}
	}
	s, err := serialvault.Sign(h, a.Body(), testKey(t), fixedNow)
	if err != nil {
		t.Fatalf("re-sign: %v", err)
	}
	return headerNames(s)
}

func TestTypedViews(t *testing.T) {
	as, err := serialvault.DecodeStream(readVector(t, "03-serial-request-stream.txt"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := serialvault.AsSerialRequest(as[0])
	if err != nil {
		t.Fatal(err)
	}
	if req.BrandID != "acme" || req.Model != "acme-gw-armhf" || req.Serial != "LINE1-000200" ||
		req.RequestID != "5c417545c6ea7713f3cc20698a755160ab9cd59e" || req.DeviceKey.Bits() != 4096 ||
		string(req.Body()) != "mac: \"00:11:22:33:44:55\"\n" {
		t.Errorf("serial-request = %+v", req)
	}
	m, err := serialvault.AsModel(as[1])
	if err != nil {
		t.Fatal(err)
	}
	if !m.UC20() || m.Gadget != "acme-gadget" || m.Kernel != "pi-kernel" || m.Base != "core22" || m.Grade != "signed" ||
		len(m.Snaps) != 4 || m.Snaps[2].DefaultChannel != "latest/stable" || m.Snaps[0].ID != "AcmeGadgetSnapId0000000000000001" {
		t.Errorf("model = %+v", m)
	}

	s, err := serialvault.AsSerial(mustDecode(t, "04-serial-response.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Serial != "LINE1-000200" || !s.DeviceKey.Equal(req.DeviceKey) || s.Revision() != 1 ||
		s.DeviceKeyID != "rX5r8d4tZMxIDxIpKpf42ha4Hdlk9Z6W1NEQfEWo9k8q0Fb15488QdpjdLPwY5BE" || s.Timestamp.IsZero() {
		t.Errorf("serial = %+v", s)
	}
	dup, err := serialvault.AsSerial(mustDecode(t, "07-serial-2048-device-key.txt"))
	if err != nil || dup.Revision() != 4 || dup.DeviceKey.Bits() != 2048 {
		t.Errorf("2048-bit serial: %+v %v", dup, err)
	}

	uc18, err := serialvault.AsModel(mustDecode(t, "09-model-uc18-pi2.real.txt"))
	if err != nil || uc18.UC20() || uc18.Gadget != "pi=18-pi2" || uc18.Base != "core18" || uc18.DisplayName != "Ubuntu Core 18 (pi2)" {
		t.Errorf("uc18 model = %+v %v", uc18, err)
	}
	classic, err := serialvault.AsModel(mustDecode(t, "13-model-generic-classic.real.txt"))
	if err != nil || !classic.Classic {
		t.Errorf("classic model = %+v %v", classic, err)
	}
	ak, err := serialvault.AsAccountKey(mustDecode(t, "12-account-key-generic-models.real.txt"))
	if err != nil || ak.AccountID != "generic" || ak.Name != "models" || ak.PublicKey.ID() != "d-JcZF9nD9eBw7bwMnH61x-bklnQOhQud1Is6o_cn2wTj8EYDi9musrIT9z2MdAa" {
		t.Errorf("account-key = %+v %v", ak, err)
	}
	root, err := serialvault.AsAccountKey(mustDecode(t, "14-account-key-canonical-root.real.txt"))
	if err != nil || root.PublicKey.Bits() != 8192 {
		t.Errorf("root key: %v", err)
	}
	if _, err := serialvault.AsSerial(as[1]); err == nil {
		t.Error("a model accepted as a serial")
	}
}

func mustDecode(t *testing.T, name string) *serialvault.Assertion {
	t.Helper()
	a, err := serialvault.Decode(readVector(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestEncodedPublicKey(t *testing.T) {
	data := readVector(t, "acme-brand-key.pub")
	k, err := serialvault.DecodePublicKey(data)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID() != "UytTqTvREVhx0tSfYC6KkFHmLWllIIZbQ3NsEG7OARrWuaXSRJyey0vjIQkTEvMO" || k.Bits() != 4096 {
		t.Errorf("id %s bits %d", k.ID(), k.Bits())
	}
	if k.Encode()+"\n" != string(data) {
		t.Errorf("re-encoded key differs:\n%s", k.Encode())
	}
	// A key built from the RSA numbers encodes to the same bytes (fixed
	// creation time), so ids agree with snapd's.
	k2, err := serialvault.NewPublicKey(k.RSA())
	if err != nil || k2.ID() != k.ID() {
		t.Errorf("NewPublicKey id %s, want %s (%v)", k2.ID(), k.ID(), err)
	}
}

// TestTampering changes headers, bodies and signatures of real assertions:
// each must be rejected with a clear reason.
func TestTampering(t *testing.T) {
	ring := vectorRing(t)
	orig := string(readVector(t, "04-serial-response.txt"))
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"serial changed", "serial: LINE1-000200", "serial: LINE1-000201", "signature does not match"},
		{"revision changed", "revision: 1", "revision: 2", "signature does not match"},
		{"body changed", `mac: "00:11:22:33:44:55"`, `mac: "00:11:22:33:44:56"`, "signature does not match"},
		{"signature bit flipped", "AcLBUgQAAQoABgUCawof+AAAKiwQABCJffFbK97v", "AcLBUgQAAQoABgUCawof+AAAKiwQABCJffFbK97w", "signature does not match"},
		{"signature truncated", "bU7blGGUYAaviZpLW4DrvlK5WezZ", "bU7blGGU", "signature packet"},
		{"other signing key", "sign-key-sha3-384: UytTqTvREVhx0tSfYC6KkFHmLWllIIZbQ3NsEG7OARrWuaXSRJyey0vjIQkTEvMO",
			"sign-key-sha3-384: d-JcZF9nD9eBw7bwMnH61x-bklnQOhQud1Is6o_cn2wTj8EYDi9musrIT9z2MdAa", "authority"},
		{"untrusted key", "sign-key-sha3-384: UytTqTvREVhx0tSfYC6KkFHmLWllIIZbQ3NsEG7OARrWuaXSRJyey0vjIQkTEvMO",
			"sign-key-sha3-384: AAAAqTvREVhx0tSfYC6KkFHmLWllIIZbQ3NsEG7OARrWuaXSRJyey0vjIQkTEvMO", "not trusted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(orig, tc.from) {
				t.Fatalf("vector lacks %q", tc.from)
			}
			a, err := serialvault.Decode([]byte(strings.Replace(orig, tc.from, tc.to, 1)))
			if err == nil {
				_, err = ring.Verify(a)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// The device-key-sha3-384 must name the device key.
	bad := strings.Replace(orig, "device-key-sha3-384: rX5r8d4t", "device-key-sha3-384: rX5r8d4X", 1)
	if a, err := serialvault.Decode([]byte(bad)); err != nil {
		t.Fatal(err)
	} else if _, err := serialvault.AsSerial(a); err == nil || !strings.Contains(err.Error(), "does not match the device key") {
		t.Errorf("mismatched device key id: %v", err)
	}
	// A serial-request signed by another key is refused.
	req := string(readVector(t, "03-serial-request-stream.txt"))
	as, _ := serialvault.DecodeStream([]byte(strings.Replace(req, "request-id: 5c41", "request-id: 6c41", 1)))
	if _, err := serialvault.AsSerialRequest(as[0]); !errors.Is(err, serialvault.ErrSignature) {
		t.Errorf("tampered serial-request: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	valid := string(readVector(t, "10-model-acme-uc22.txt"))
	big := "type: model\nx: " + strings.Repeat("a", serialvault.MaxHeadersSize) + "\nsign-key-sha3-384: k\n\nAQ==\n"
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "empty input"},
		{"no blank line", "type: model\n", "no blank line"},
		{"no type", "brand-id: x\nsign-key-sha3-384: k\n\nAcLB\n", "type header missing"},
		{"no sign key", "type: model\n\nAcLB\n", "sign-key-sha3-384 header missing"},
		{"repeated header", "type: a\ntype: b\nsign-key-sha3-384: k\n\nAQ==\n", "repeated"},
		{"bad name", "type: a\nBad: b\nsign-key-sha3-384: k\n\nAQ==\n", "invalid header name"},
		{"no space", "type:a\nsign-key-sha3-384: k\n\nAQ==\n", "one space"},
		{"empty block", "type: a\nx:\nsign-key-sha3-384: k\n\nAQ==\n", "empty value"},
		{"bad indent", "type: a\nx:\n   y\nsign-key-sha3-384: k\n\nAQ==\n", "wrong indentation"},
		{"carriage return", "type: a\r\nsign-key-sha3-384: k\n\nAQ==\n", "carriage return"},
		{"bad revision", "type: a\nrevision: 01\nsign-key-sha3-384: k\n\nAQ==\n", "non-negative integer"},
		{"short body", "type: a\nbody-length: 10\nsign-key-sha3-384: k\n\nabc\n\nAQ==\n", "body"},
		{"huge body-length", "type: a\nbody-length: 99999999\nsign-key-sha3-384: k\n\n", "exceeds"},
		{"no signature", "type: a\nsign-key-sha3-384: k\n\n", "missing signature"},
		{"not base64", "type: a\nsign-key-sha3-384: k\n\n!!!!\n", "not base64"},
		{"bad signature format", "type: a\nsign-key-sha3-384: k\n\nAgAA\n", "unknown signature format"},
		{"headers too large", big, "headers larger"},
		{"two assertions", valid + "\n" + valid, "more than one"},
		{"primary key missing", strings.Replace(valid, "model: acme-gw-armhf\n", "", 1), "primary key model missing"},
		{"slash in primary key", strings.Replace(valid, "model: acme-gw-armhf\n", "model: a/b\n", 1), "must not contain '/'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := serialvault.Decode([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if err != nil && !errors.Is(err, serialvault.ErrFormat) {
				t.Errorf("error does not wrap ErrFormat: %v", err)
			}
		})
	}
}

func TestHeaderGrammar(t *testing.T) {
	headers := map[string]any{
		"type":         "test",
		"authority-id": "acme",
		"multi":        "line one\nline two\n  indented\n",
		"list":         []any{"a", "b c", []any{"nested", "list"}, map[string]any{"k": "v", "a": "multi\nline"}},
		"map":          map[string]any{"z": "last", "a": []string{"x", "y"}, "m": map[string]any{"deep": "value"}},
		"empty":        "",
		"omitted-list": []any{},
		"num":          7,
	}
	key := testKey(t)
	a, err := serialvault.Sign(headers, []byte("body\n\nwith a blank line\n"), key, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	enc := a.Encode()
	b, err := serialvault.Decode(enc)
	if err != nil {
		t.Fatalf("%v\n%s", err, enc)
	}
	if !bytes.Equal(b.Encode(), enc) || !b.Canonical() {
		t.Errorf("round trip differs:\n%s\n---\n%s", b.Encode(), enc)
	}
	if err := serialvault.Verify(b, key.Public()); err != nil {
		t.Error(err)
	}
	if b.HeaderString("multi") != "line one\nline two\n  indented\n" || b.HeaderString("empty") != "" || b.HeaderString("num") != "7" {
		t.Errorf("scalars: %q %q %q", b.HeaderString("multi"), b.HeaderString("empty"), b.HeaderString("num"))
	}
	if b.Header("omitted-list") != nil {
		t.Error("empty list encoded")
	}
	l := b.Header("list").([]any)
	if len(l) != 4 || l[1] != "b c" || l[2].([]any)[1] != "list" || l[3].(map[string]any)["a"] != "multi\nline" {
		t.Errorf("list = %#v", l)
	}
	m := b.Header("map").(map[string]any)
	if m["a"].([]any)[1] != "y" || m["m"].(map[string]any)["deep"] != "value" {
		t.Errorf("map = %#v", m)
	}
	if string(b.Body()) != "body\n\nwith a blank line\n" {
		t.Errorf("body = %q", b.Body())
	}
	wantOrder := "type,authority-id,empty,list,map,multi,num,body-length,sign-key-sha3-384"
	if got := headerNames(b); got != wantOrder {
		t.Errorf("order %s, want %s", got, wantOrder)
	}
	// A stream of two, the first with a body holding blank lines.
	stream := append(append(append([]byte{}, enc...), '\n'), enc...)
	as, err := serialvault.DecodeStream(stream)
	if err != nil || len(as) != 2 {
		t.Fatalf("stream: %d, %v", len(as), err)
	}
}

// TestNonCanonicalStillVerifies: a signature covers the bytes as received,
// so an assertion whose map keys are not sorted still verifies, and Encode
// keeps its bytes.
func TestNonCanonicalStillVerifies(t *testing.T) {
	key := testKey(t)
	content := "type: test\nauthority-id: acme\nm:\n  z: 1\n  a: 2\nsign-key-sha3-384: " + key.Public().ID()
	a, err := serialvault.SignContentForTest([]byte(content), key)
	if err != nil {
		t.Fatal(err)
	}
	if a.Canonical() {
		t.Error("unsorted map reported canonical")
	}
	if err := serialvault.Verify(a, key.Public()); err != nil {
		t.Errorf("non-canonical assertion does not verify: %v", err)
	}
	if !strings.HasPrefix(string(a.Encode()), content+"\n\n") {
		t.Errorf("Encode changed the content:\n%s", a.Encode())
	}
}
