package flashstation_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryPackageHasADocComment walks the module and fails for any
// package (directory of non-test Go files) without a package doc comment.
func TestEveryPackageHasADocComment(t *testing.T) {
	pkgs := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
			return filepath.SkipDir
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		var goFiles, documented int
		for _, e := range entries {
			n := e.Name()
			if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(path, n), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				return err
			}
			goFiles++
			if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
				documented++
			}
		}
		if goFiles > 0 {
			pkgs++
			if documented == 0 {
				t.Errorf("package %s has no package doc comment", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pkgs < 10 {
		t.Errorf("found only %d packages; is the walk broken?", pkgs)
	}
}

// TestLayout checks the top-level packages of ARCHITECTURE.md exist.
func TestLayout(t *testing.T) {
	for _, dir := range []string{"cmd/flashstation", "flash", "console", "serialvault", "lines", "ledger", "tui", "sim", "configs"} {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Errorf("missing %s/", dir)
		}
	}
}
