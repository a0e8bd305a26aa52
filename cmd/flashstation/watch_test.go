package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// makeRaw puts a terminal in raw mode (cfmakeraw): no echo, no line
// editing, bytes as they are.
func makeRaw(f *os.File) error {
	fd := int(f.Fd())
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB
	tio.Cflag |= unix.CS8
	tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
}

func TestWatchCommand(t *testing.T) {
	composite, err := os.ReadFile("../../console/testdata/uc20-first-boot-composite.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		code    int
		verdict string
		reason  string
	}{
		{"composite", composite, 0, "pass", ""},
		{"kernel panic", []byte("U-Boot 2020.10 (Jan 08 2021)\r\nStarting kernel ...\r\n[ 1.0] Kernel panic - not syncing: Attempted to kill init!\r\n[ 1.1] ---[ end Kernel panic - not syncing: Attempted to kill init! ]---\r\n"), 1, "fail", "kernel-panic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, s, err := pty.Open()
			if err != nil {
				t.Skip(err)
			}
			defer m.Close()
			defer s.Close()
			// The boot is written before the watch opens the port: the
			// pseudo-terminal keeps the bytes, raw as the watch reads them,
			// until it does. No wait for the watch to be ready is needed.
			if err := makeRaw(s); err != nil {
				t.Fatal(err)
			}
			go m.Write(tc.data) // returns once the watch has read what the pty cannot hold
			trPath := filepath.Join(t.TempDir(), "boot.raw")
			bg := start(t, "watch", "--port", s.Name(), "--json", "--transcript", trPath)
			err2 := bg.wait(t)
			if got := exitCode(err2); got != tc.code {
				t.Errorf("exit %d, want %d (%v)\n%s", got, tc.code, err2, bg.stdout.String())
			}
			var doc struct {
				Verdict, Reason, Transcript string
				Stages                      []struct{ Name string }
				LastLines                   []string `json:"last_lines"`
			}
			if err := json.Unmarshal([]byte(bg.stdout.String()), &doc); err != nil {
				t.Fatalf("stdout is not one JSON document: %v\n%s", err, bg.stdout.String())
			}
			if doc.Verdict != tc.verdict || doc.Reason != tc.reason || doc.Transcript != trPath {
				t.Errorf("%+v", doc)
			}
			if tc.verdict == "pass" && len(doc.Stages) != 6 {
				t.Errorf("stages %+v", doc.Stages)
			}
			if tc.verdict == "fail" && !strings.Contains(strings.Join(doc.LastLines, "\n"), "Kernel panic") {
				t.Errorf("last lines %v", doc.LastLines)
			}
			if fi, err := os.Stat(trPath); err != nil || fi.Size() == 0 {
				t.Errorf("transcript: %v", err)
			}
		})
	}
	code, out, _ := runCmd("watch", "--port", filepath.Join(t.TempDir(), "none"))
	if code != 1 || !strings.Contains(out, "FAIL port-missing") {
		t.Errorf("missing port: %d %s", code, out)
	}
	if code, _, _ := runCmd("watch", "--port", "/dev/null", "--profile", "uc99"); code != 2 {
		t.Errorf("unknown profile: exit %d", code)
	}
}
