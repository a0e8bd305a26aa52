package flash_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/flashstation/flashstation/flash"
)

const imageSize = 24<<20 + 1536 // not a multiple of 4 KiB: the tail is partial

// region is a part of a test image.
type region struct {
	off, length int64
	zero        bool // allocated but zero-filled (stays mapped in a bmap)
}

// testRegions shape an Ubuntu-Core-like image: a partition table at the
// start, data in several places, an allocated zero-filled range, holes, and
// data in the last, partial block (a backup GPT).
var testRegions = []region{
	{0, 64 << 10, false},
	{1<<20 + 4096, 3 << 20, false},
	{6 << 20, 256 << 10, true},
	{9<<20 + 12288, 5<<20 + 8192, false},
	{20 << 20, 4096, false},
	{imageSize - 5632, 5632, false},
}

// makeImage writes a sparse raw test image and returns its path and
// content.
func makeImage(t testing.TB, dir string) (string, []byte) {
	t.Helper()
	content := make([]byte, imageSize)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, r := range testRegions {
		if !r.zero {
			// Position-dependent and never zero, so a misplaced block shows,
			// yet compressible enough to keep xz fast; a few random bytes
			// per block make every block distinct.
			for i := r.off; i < r.off+r.length; i++ {
				content[i] = byte(i/4096*31+i%251) | 1
				if i%512 == 0 {
					content[i] = byte(rng.IntN(255) + 1)
				}
			}
		}
	}
	path := filepath.Join(dir, "image.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(imageSize); err != nil {
		t.Fatal(err)
	}
	for _, r := range testRegions {
		if _, err := f.WriteAt(content[r.off:r.off+r.length], r.off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	return path, content
}

var (
	sharedMu      sync.Mutex
	sharedDir     string
	sharedFiles   = map[string]string{}
	sharedRaw     string
	sharedContent []byte
)

// TestMain cleans the images shared by the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// sharedImage returns the test image, made once per test binary.
func sharedImage(t testing.TB) (string, []byte) {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedRaw == "" {
		dir, err := os.MkdirTemp("", "flash-test-")
		if err != nil {
			t.Fatal(err)
		}
		sharedDir = dir
		sharedRaw, sharedContent = makeImage(t, dir)
	}
	return sharedRaw, sharedContent
}

// sharedCompressed returns the test image compressed, made once.
func sharedCompressed(t testing.TB, format string) string {
	t.Helper()
	raw, _ := sharedImage(t)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if p, ok := sharedFiles[format]; ok {
		return p
	}
	p := compressFile(t, raw, format)
	sharedFiles[format] = p
	return p
}

// compressFile writes src compressed as format next to it.
func compressFile(t testing.TB, src, format string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := src + "." + format
	if err := os.WriteFile(dst, compressBytes(t, format, data), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func newCache(t testing.TB) *flash.Cache {
	t.Helper()
	c, err := flash.NewCache(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetChunkSize(1 << 20)
	return c
}

func prepare(t testing.TB, c *flash.Cache, spec flash.ImageSpec) *flash.Prepared {
	t.Helper()
	img, err := c.Prepare(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// mappedOf returns the bytes a map must cover: every non-zero region.
func checkCovers(t testing.TB, img *flash.Prepared, content []byte) {
	t.Helper()
	covered := make([]bool, len(content))
	for _, c := range img.Chunks {
		for i := c.Offset; i < c.Offset+c.Length; i++ {
			covered[i] = true
		}
	}
	for i, b := range content {
		if b != 0 && !covered[i] {
			t.Fatalf("non-zero byte at %d not mapped", i)
		}
	}
}

func fileBytes(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func firstDiff(a, b []byte) int {
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}
