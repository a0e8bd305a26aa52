package lines_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flashstation/flashstation/lines"
)

// FuzzParse feeds arbitrary bytes to the station file loader: it must never
// panic, and every problem must carry a position.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/config/*.yaml")
	seeds = append(seeds, "../configs/station.example.yaml")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("<<: *x\n"))
	f.Add([]byte("slots: [{<<: {<<: {id: 1}}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, problems := lines.Parse("testdata/config/fuzz.yaml", data)
		if st == nil {
			t.Fatal("nil station")
		}
		for _, p := range problems {
			if p.Pos.Line < 1 || p.Pos.Col < 1 {
				t.Fatalf("problem without position: %v", p)
			}
		}
	})
}
