package flash_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/internal/disktest"
)

// smallTmpfs mounts a tmpfs of the given size, or skips without root.
func smallTmpfs(t *testing.T, size string) string {
	return disktest.Tmpfs(t, t.TempDir(), size)
}

// TestFullDiskTargetFailsAlone writes to three targets, one on a tmpfs too
// small for the image: it fails with write-error and an offset, the others
// pass.
func TestFullDiskTargetFailsAlone(t *testing.T) {
	small := smallTmpfs(t, "4m")
	raw, content := sharedImage(t)
	img := prepare(t, newCache(t), flash.ImageSpec{Path: raw})
	var targets []flash.Target
	for _, p := range []string{filepath.Join(t.TempDir(), "a.img"), filepath.Join(small, "full.img"), filepath.Join(t.TempDir(), "b.img")} {
		ft, err := flash.OpenFileTarget(p)
		if err != nil {
			t.Fatal(err)
		}
		defer ft.Close()
		targets = append(targets, ft)
	}
	results := flash.WriteAll(context.Background(), img, targets, flash.Options{Verify: true})
	for i, r := range results {
		if i == 1 {
			if r.Failure == nil || r.Failure.Reason != flash.ReasonWriteError || r.Failure.Offset <= 0 ||
				!strings.Contains(r.Failure.Error(), "no space left") {
				t.Errorf("full tmpfs: %+v", r.Failure)
			}
			continue
		}
		if r.Failure != nil || !r.Verified {
			t.Errorf("%s: %v", r.Target, r.Failure)
			continue
		}
		if i := firstDiff(fileBytes(t, r.Target), content); i >= 0 {
			t.Errorf("%s differs at %d", r.Target, i)
		}
	}
}

// TestCacheDiskFull prepares into a cache on a tmpfs that cannot hold the
// image: a clear "disk full" error, and nothing half-prepared is left.
func TestCacheDiskFull(t *testing.T) {
	small := smallTmpfs(t, "2m")
	c, err := flash.NewCache(filepath.Join(small, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Prepare(context.Background(), flash.ImageSpec{Path: sharedCompressed(t, "zst")}, nil)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want a disk full message", err)
	}
	entries, _ := os.ReadDir(filepath.Join(small, "cache"))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") || (e.IsDir() && e.Name() != "index") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
