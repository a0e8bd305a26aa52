package seedimage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/flashstation/flashstation/internal/seedimage"
)

// A UC20+ image of a model, with its gadget (whose gadget.yaml is made
// to agree with the partitions) and 2 MiB of data in the seed.
func ExampleBuild() {
	if seedimage.Available() != nil {
		fmt.Println("built") // the tools are missing: nothing to show
		return
	}
	dir, _ := os.MkdirTemp("", "seedimage-example-")
	defer os.RemoveAll(dir)
	model, _ := os.ReadFile("../../../shared/testdata/assertions/10-model-acme-uc22.txt")
	err := seedimage.Build(context.Background(), filepath.Join(dir, "image.img"), seedimage.Spec{
		Model:  model,
		Gadget: &seedimage.Gadget{Name: "acme-gadget"},
		Snaps:  []string{"pi-kernel", "core22", "snapd"},
		Extra:  []seedimage.Region{{Name: "data/blob", File: true, Size: 2 << 20}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("built")
	// Output: built
}
