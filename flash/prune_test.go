package flash_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flashstation/flashstation/flash"
)

// TestPruneKeepsRecentImages: every copy of an image is a new cache entry
// (the cache is keyed by file identity), so a station that takes a new
// download each week would fill its disk. Preparing an image prunes the
// entries used least recently beyond the four last, unless used within
// the day or locked by another process preparing it.
func TestPruneKeepsRecentImages(t *testing.T) {
	c := newCache(t)
	src := t.TempDir()
	var keys []string
	for i := range 7 {
		path := filepath.Join(src, fmt.Sprintf("img%d.raw", i))
		data := make([]byte, 256<<10)
		for j := range data {
			data[j] = byte(i + j*7)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, prepare(t, c, flash.ImageSpec{Path: path}).Key)
	}
	// All used within the day: all kept so far.
	for i, k := range keys {
		// Now each one last used 9-i days ago, the first ones the oldest...
		old := time.Now().Add(-time.Duration(9-i) * 24 * time.Hour)
		if err := os.Chtimes(filepath.Join(c.Dir(), k), old, old); err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
	}
	// ...but images 1 to 4 used again an hour or so ago, and image 0
	// being prepared by another process (its lock held).
	for i := 1; i <= 4; i++ {
		recent := time.Now().Add(-time.Duration(i) * time.Hour)
		if err := os.Chtimes(filepath.Join(c.Dir(), keys[i]), recent, recent); err != nil {
			t.Fatal(err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(c.Dir(), keys[0]+".lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(src, "new.raw")
	if err := os.WriteFile(path, []byte("a new image, to be prepared"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := prepare(t, c, flash.ImageSpec{Path: path})

	var left []string
	entries, _ := os.ReadDir(c.Dir())
	for _, e := range entries {
		if e.IsDir() {
			left = append(left, e.Name())
		}
	}
	// Kept: the four used last (the new one, 1, 2, 3), 4 (used within the
	// day) and the locked 0; 5 and 6 gone, though newer files than 0.
	want := []string{img.Key, keys[1], keys[2], keys[3], keys[4], keys[0]}
	slices.Sort(want)
	slices.Sort(left)
	if !slices.Equal(left, want) {
		t.Fatalf("cache holds %v, want %v (keys by age: %v)", left, want, keys)
	}
	// A pruned image is prepared again when asked for.
	again := prepare(t, c, flash.ImageSpec{Path: filepath.Join(src, "img5.raw")})
	if again.Cached {
		t.Fatal("a pruned image came from the cache")
	}
}
