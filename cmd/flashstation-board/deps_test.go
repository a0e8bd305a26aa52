//go:build linux

package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestInitLinksNoDatabase: the board's init goes into every QEMU board's
// initramfs, which U-Boot loads and the kernel unpacks under TCG on each
// boot: it must not link the station's ledger or SQLite (it carries
// records, through ledger/record, but stores none).
func TestInitLinksNoDatabase(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool here")
	}
	cmd := exec.Command(goCmd, "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm", "GOARM=7", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "github.com/flashstation/flashstation/ledger" || strings.HasPrefix(dep, "modernc.org/sqlite") || strings.HasPrefix(dep, "github.com/jackc/pgx") {
			t.Errorf("the board's init links %s", dep)
		}
	}
}
