package yamlbound_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/internal/yamlbound"
)

// FuzzParse: any bytes are either a tree or an *Error naming the file,
// never a panic; decoding an accepted tree never panics either.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a: 1\nb: [x, {y: z}]\n",
		"a: &a {x: 1}\nb: {<<: *a, y: 2}\n",
		"- - - [[{a: b}]]\n",
		"a: |\n  [[[[\nb: \"[[\\\"\"\n",
		"A: 0\nstages:\n  ! 0\n00000008: 0",
		laughs(false),
		"a: &a [*a]\n",
	} {
		f.Add([]byte(s))
	}
	lim := yamlbound.Limits{What: "fuzz file", MaxBytes: 1 << 16, MaxDepth: 8, MaxAliasNodes: 1000}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := yamlbound.Parse("fuzz.yaml", data, lim)
		if err != nil {
			var be *yamlbound.Error
			if !errors.As(err, &be) || be.File != "fuzz.yaml" || be.Line < 0 || be.Col < 0 {
				t.Fatalf("error %v (%T)", err, err)
			}
			if errors.Is(err, yamlbound.ErrLibraryPanic) && !strings.Contains(err.Error(), "library failed") {
				t.Fatalf("panic error %v", err)
			}
			return
		}
		var v any
		err = yamlbound.Decode("fuzz.yaml", data, &v, lim)
		var be *yamlbound.Error
		if err != nil && !errors.As(err, &be) {
			t.Fatalf("decode error %v (%T)", err, err)
		}
	})
}
