package libusbtest_test

import (
	"strings"
	"testing"

	"github.com/flashstation/flashstation/usb/libusb/libusbtest"
)

// TestScriptErrors: a script that cannot be played is refused, naming its
// line.
func TestScriptErrors(t *testing.T) {
	for _, tc := range []struct{ script, want string }{
		{"open", `line 1: "open": want a call and a device`},
		{"dance 1-1", `line 1: unknown call "dance"`},
		{"\nwrite 1-1 \"unterminated", "line 2: invalid syntax"},
		{"control 1-1 type=0x123", `line 1: bad number "0x123"`},
		{"control 1-1 colour=red", `line 1: unknown key "colour"`},
		{"write 1-1 sha256=abcd", "line 1: sha256 of 2 bytes"},
		{"read 1-1 err=melted", `line 1: unknown error "melted"`},
		{"write 1-1 bare", `line 1: "bare": want key=value`},
		{"interface 1-1 0", "describe the device first"},
		{"device 1-1 class=0x09\ninterface 1-1 0 class=ff", "want class/subclass/protocol"},
		{"device 1-1 class=0x09\ninterface 1-1 0 ep=in:1", "want in|out:number:type:maxpacket"},
		{"device 1-1 speed=fast", `unknown key "speed"`},
	} {
		_, err := libusbtest.ParseScript(strings.NewReader(tc.script))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.script, err, tc.want)
		}
	}
}

// TestPlaybackMismatch: a call the script does not expect, or other bytes
// than recorded, is an error of the call and of Err; calls never made are
// reported too.
func TestPlaybackMismatch(t *testing.T) {
	p, err := libusbtest.ParseScript(strings.NewReader(`device 1-1 class=0x09
open 1-1
control 1-1 type=0x23 req=1 value=8 index=2
close 1-1
`))
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.Open(1, []int{1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Control(0x23, 1, 8, 3, nil, 0); err == nil || !strings.Contains(err.Error(), "index=3") {
		t.Errorf("wrong port: %v", err)
	}
	if _, err := p.Open(2, []int{1}); err == nil || !strings.Contains(err.Error(), "got open 2-1") {
		t.Errorf("wrong device: %v", err)
	}
	err = p.Err()
	for _, want := range []string{"index=3", "got open 2-1", "2 calls never made", "device 1-1 left open"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Err() = %v, want %q", err, want)
		}
	}
}
