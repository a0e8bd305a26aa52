package main

import (
	"net"
	"strings"
	"testing"
)

// TestDemoMetrics: demo --metrics serves the station's metrics and says
// where; an address another program holds stops the start (exit 2) with
// a hint.
func TestDemoMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		name, addr string
		code       int
		stdout     string
		stderr     string
	}{
		{name: "served", addr: "127.0.0.1:0", code: 0, stdout: "metrics at http://127.0.0.1:"},
		{name: "taken", addr: taken.Addr().String(), code: exitUsage, stderr: "Another program listens on the metrics address"},
		{name: "no port", addr: "localhost", code: exitUsage, stderr: "Give the metrics a host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd("demo", "--headless", "--data", t.TempDir(), "--boards", "2", "--speed", "50", "--fast-keys", "--metrics", tc.addr)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("exit %d, want %d with %q on stdout and %q on stderr\nstdout:\n%s\nstderr:\n%s", code, tc.code, tc.stdout, tc.stderr, out, errOut)
			}
		})
	}
}
