package libusb_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	module  = "github.com/flashstation/flashstation"
	adapter = module + "/usb/libusb"
	gousb   = "github.com/google/gousb"
)

// goTool returns the go command and the module's root, or skips.
func goTool(t *testing.T) (goCmd, root string) {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
			goCmd = p
		} else {
			t.Skip("no go tool:", err)
		}
	}
	out, err := exec.Command(goCmd, "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		t.Skipf("go env GOMOD: %v %q", err, out)
	}
	return goCmd, filepath.Dir(strings.TrimSpace(string(out)))
}

// TestOnlyTheAdapterImportsGousb lists every package of the module with
// its dependencies (as built with cgo, so that the adapter's cgo files
// count) and fails for any package of the module but the adapter that
// imports gousb, in its code or its tests.
func TestOnlyTheAdapterImportsGousb(t *testing.T) {
	goCmd, root := goTool(t)
	cmd := exec.Command(goCmd, "list", "-deps", "-test", "-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, "./...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	adapterImports := false
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		// A test variant is named "pkg [pkg.test]"; its imports follow.
		pkg := f[0]
		imports := f[1:]
		if len(imports) > 0 && strings.HasPrefix(imports[0], "[") {
			imports = imports[1:]
		}
		if pkg != module && !strings.HasPrefix(pkg, module+"/") {
			continue // a dependency, gousb itself among them
		}
		for _, imp := range imports {
			if imp != gousb && !strings.HasPrefix(imp, gousb+"/") {
				continue
			}
			if pkg == adapter {
				adapterImports = true
				continue
			}
			t.Errorf("%s imports %s: only %s may (declare an interface where it is used, and implement it there)", pkg, imp, adapter)
		}
	}
	if !adapterImports {
		t.Errorf("go list shows no import of %s by %s: is the check looking at the right thing?\n%s", gousb, adapter, out)
	}
}

// TestBuildsWithoutCgo: everything builds with CGO_ENABLED=0 (the adapter
// then answers ErrUnavailable).
func TestBuildsWithoutCgo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the whole module")
	}
	goCmd, root := goTool(t)
	cmd := exec.Command(goCmd, "build", "./...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./...: %v\n%s", err, out)
	}
	vet := exec.Command(goCmd, "vet", "./usb/libusb/")
	vet.Dir = root
	vet.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := vet.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go vet ./usb/libusb/: %v\n%s", err, out)
	}
}
