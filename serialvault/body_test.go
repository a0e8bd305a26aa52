package serialvault_test

import (
	"strings"
	"testing"

	"github.com/flashstation/flashstation/serialvault"
)

// TestScanBodySerial: the serial comes from the body's one top-level
// serial key when the header has none, read as the vault's YAML decoder
// reads it; anything else proposes nothing or is refused with a reason.
func TestScanBodySerial(t *testing.T) {
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
		"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nserial: A-1\nall: *c\n"
	for _, tc := range []struct{ name, body, want, err string }{
		{"plain", "serial: A-1\nextra: {x: 1}\n", "A-1", ""},
		{"comment and CRLF", "# made at the factory\r\nmac: 00:11\r\nserial: ACME-42 # label\r\n", "ACME-42", ""},
		{"document start", "---\nserial: X1\n", "X1", ""},
		{"double quoted", "serial: \"0042\"\n", "0042", ""},
		{"single quoted", "serial: 'yes'\n", "yes", ""},
		{"nested values elsewhere", "wifi:\n  serial: NOT-THIS\nserial: THIS\n", "THIS", ""},
		{"no serial", "other: x\n", "", ""},
		{"empty body", "", "", ""},
		{"alias bomb elsewhere, never expanded", bomb, "", "anchor or alias"},
		{"tag on a value", "0:\n !0000000000\nserial: A\n", "", "anchor or alias"},
		{"star inside a scalar", "note: 5 * 3 = 15!\nserial: S-1\n", "S-1", ""},
		{"deep nesting elsewhere", "serial: A-1\nx: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n", "A-1", ""},
		{"number", "serial: 12345\n", "", "number"},
		{"hex number", "serial: 0x1F\n", "", "number"},
		{"float", "serial: 1e5\n", "", "number"},
		{"boolean", "serial: yes\n", "", "boolean"},
		{"date", "serial: 2026-12-01\n", "", "date"},
		{"alias", "x: &a A-1\nserial: *a\n", "", "anchor or alias"},
		{"flow", "serial: [A-1]\n", "", "not a plain scalar"},
		{"block", "serial: |\n  A-1\n", "", "not a plain scalar"},
		{"nested", "serial:\n  A-1\n", "", "no value"},
		{"continued on the next line", "serial: A-1\n  more\n", "", "goes on past its line"},
		{"two keys", "serial: A-1\nserial: A-2\n", "", "second serial"},
		{"flow mapping body", "{serial: A-1}\n", "", "not a plain YAML mapping"},
		{"quoted key", "\"serial\": A-2\nserial: A-1\n", "", "not a plain YAML mapping"},
		{"merge key", "<<: {serial: A-2}\nserial: A-1\n", "", "not a plain YAML mapping"},
		{"tab indent", "\tserial: A-1\n", "", "not a plain YAML mapping"},
		{"loose", "serial: two words\n", "", "strict form"},
		{"escape", "serial: \"A\\x41\"\n", "", "escapes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := serialvault.ScanBodySerial([]byte(tc.body))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("got %q, %v; want an error with %q", got, err, tc.err)
			case got != tc.want:
				t.Errorf("proposed %q, want %q", got, tc.want)
			}
		})
	}
}

// TestScanBodySerialBounded: a 64 KiB body nested as deep as it can go
// costs a scan, not a decode (the old full YAML decode of such a body took
// the station to 670 MB).
func TestScanBodySerialBounded(t *testing.T) {
	body := []byte("serial: A-1\nx: " + strings.Repeat("[", serialvault.MaxRequestBody/2) + "\n")
	allocs := testing.AllocsPerRun(20, func() {
		if s, err := serialvault.ScanBodySerial(body); s != "A-1" || err != nil {
			t.Fatalf("%q %v", s, err)
		}
	})
	if allocs > 4 && !raceEnabled {
		t.Errorf("%.0f allocations per scan of a deep body", allocs)
	}
}

// TestProposedSerialHeaderFirst: the serial header wins over the body.
func TestProposedSerialHeaderFirst(t *testing.T) {
	a, err := serialvault.NewSerialRequest(testKey(t), "acme", "acme-gw-armhf", "REQ-1", "HDR-1", []byte("serial: 12345\n"), fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	req, err := serialvault.AsSerialRequest(a)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := serialvault.ProposedSerial(req); got != "HDR-1" || err != nil {
		t.Errorf("proposed %q %v", got, err)
	}
}
