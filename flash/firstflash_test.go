package flash_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/flashstation/flashstation/flash"
)

// gatedXz is a fake system xz that gives the first half of raw at once,
// then waits for gate to exist before the rest (up to 60 s, then it goes
// on, and the test fails on what it saw), then runs tail (e.g. "exit 1").
func gatedXz(t *testing.T, raw string, half int64, tail string) (gate string) {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh for the fake xz")
	}
	dir := t.TempDir()
	gate = filepath.Join(dir, "gate")
	script := fmt.Sprintf("#!/bin/sh\ncat >/dev/null\nhead -c %d '%s'\ni=0\nwhile [ ! -e '%s' ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done\ntail -c +%d '%s'\n%s\n",
		half, raw, gate, half+1, raw, tail)
	fake := filepath.Join(dir, "xz")
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(flash.UseXzCommand(fake))
	return gate
}

// xzLooking is a file the station sends to xz (its magic) and whose bytes
// the fake xz ignores.
func xzLooking(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.img.xz")
	if err := os.WriteFile(p, []byte("\xfd7zXZ\x00 the fake xz ignores this"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// gatedStream is a first flash under way: a fake xz holding the second
// half of the shared image back until gate exists, and the image Open
// returned from an empty cache.
type gatedStream struct {
	c       *flash.Cache
	image   string // the file Open was given
	img     *flash.Prepared
	gate    string
	content []byte // the raw image
}

// openGated starts a gated first flash whose fake xz ends with tail.
func openGated(t *testing.T, ctx context.Context, tail string) gatedStream {
	t.Helper()
	raw, content := sharedImage(t)
	g := gatedStream{gate: gatedXz(t, raw, imageSize/2, tail), image: xzLooking(t), c: newCache(t), content: content}
	img, err := g.c.Open(ctx, flash.ImageSpec{Path: g.image}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.img = img
	return g
}

// gateTarget opens the gate at its first write, noting whether the image
// was still being prepared then and where the write went.
type gateTarget struct {
	*flash.FileTarget
	img   *flash.Prepared
	gate  string
	once  sync.Once
	first int64
	early bool // the first write came while the image was filling
}

func (g *gateTarget) WriteAt(p []byte, off int64) (int, error) {
	g.once.Do(func() {
		g.first, g.early = off, g.img.Filling()
		os.WriteFile(g.gate, nil, 0o644)
	})
	return g.FileTarget.WriteAt(p, off)
}

func fileTarget(t *testing.T, fill byte) (*flash.FileTarget, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "target.img")
	if err := os.WriteFile(path, bytes.Repeat([]byte{fill}, imageSize), 0o644); err != nil {
		t.Fatal(err)
	}
	ft, err := flash.OpenFileTarget(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ft.Close() })
	return ft, path
}

// TestFirstFlashStreams: the first flash of a new image writes to its
// targets while the image is still coming out of its decoder (the fake xz
// holds the second half back until a target has written), the boot area
// last, and every target ends verified and whole; the cache then holds
// the image.
func TestFirstFlashStreams(t *testing.T) {
	g := openGated(t, context.Background(), "exit 0")
	c, image, img, gate, content := g.c, g.image, g.img, g.gate, g.content
	var targets []flash.Target
	var gated *gateTarget
	var paths []string
	for i := range 3 {
		ft, path := fileTarget(t, 0)
		paths = append(paths, path)
		if i == 0 {
			gated = &gateTarget{FileTarget: ft, img: img, gate: gate}
			targets = append(targets, gated)
			continue
		}
		targets = append(targets, ft)
	}
	results := flash.WriteAll(context.Background(), img, targets, flash.Options{Verify: true})
	for i, r := range results {
		if r.Failure != nil || !r.Verified || r.MappedBytes == 0 {
			t.Errorf("target %d: %+v", i, r)
		}
		if d := firstDiff(fileBytes(t, paths[i]), content); d >= 0 {
			t.Errorf("target %d differs from the image at byte %d", i, d)
		}
	}
	if !gated.early {
		t.Error("the first write came after the image was prepared: the flash did not stream")
	}
	if gated.first < 1<<20 {
		t.Errorf("the first write went to %d, in the boot area", gated.first)
	}
	final, err := img.Wait(context.Background())
	if err != nil || final.Filling() || final.Size != imageSize {
		t.Fatalf("Wait: %+v %v", final, err)
	}
	again, err := c.Open(context.Background(), flash.ImageSpec{Path: image}, nil)
	if err != nil || !again.Cached || again.Filling() || c.Preparations() != 1 {
		t.Errorf("the same file again: cached %v, filling %v, %d preparations (%v)", again.Cached, again.Filling(), c.Preparations(), err)
	}
}

// TestStreamedImageRefusedMidway: an image that turns out corrupt after
// targets have started on it fails every target image-refused; a target
// that took part of it has its boot area cleared (it held an older image:
// it must not boot a mix of both), and the cache keeps nothing.
func TestStreamedImageRefusedMidway(t *testing.T) {
	g := openGated(t, context.Background(), "echo 'xz: (stdin): Compressed data is corrupt' >&2; exit 1")
	c, img, gate := g.c, g.img, g.gate
	ft, path := fileTarget(t, 0xaa)
	gated := &gateTarget{FileTarget: ft, img: img, gate: gate}
	other, otherPath := fileTarget(t, 0xaa)
	results := flash.WriteAll(context.Background(), img, []flash.Target{gated, other}, flash.Options{Verify: true})
	for i, r := range results {
		if r.Failure == nil || r.Failure.Reason != flash.ReasonImage || !strings.Contains(r.Failure.Detail, "Compressed data is corrupt") {
			t.Errorf("target %d: %+v, want image-refused naming xz's verdict", i, r.Failure)
			continue
		}
		if r.WrittenBytes > 0 && !strings.Contains(r.Failure.Detail, "boot area was cleared") {
			t.Errorf("target %d: %q does not say the boot area was cleared", i, r.Failure.Detail)
		}
	}
	for i, p := range []string{path, otherPath} {
		got := fileBytes(t, p)
		if results[i].WrittenBytes == 0 {
			continue
		}
		if !bytes.Equal(got[:1<<20], make([]byte, 1<<20)) {
			t.Errorf("target %d: its boot area still holds data after a refused image", i)
		}
	}
	if !gated.early {
		t.Error("the gated target did not write while the image streamed")
	}
	if _, err := img.Wait(context.Background()); !errors.Is(err, flash.ErrImageRefused) {
		t.Errorf("Wait: %v, want ErrImageRefused", err)
	}
	noPreparedImage(t, c)
}

// TestOpenRawReadsNoHoles: Open takes a raw image without hashing it (its
// holes are never read) unless the line gives a hash, and keys it by its
// file's identity: the same file is found in the cache, a rewritten one
// is prepared anew. Prepare then adds the file's hash for the record.
func TestOpenRawReadsNoHoles(t *testing.T) {
	raw, content := sharedImage(t)
	dir := t.TempDir()
	own := filepath.Join(dir, "image.img")
	if err := os.WriteFile(own, content, 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCache(t)
	img, err := c.Open(context.Background(), flash.ImageSpec{Path: raw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if img, err = img.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if img.SourceSHA256 != "" {
		t.Errorf("Open hashed the raw file: %s", img.SourceSHA256)
	}
	sum := sha256.Sum256(content)
	full := prepare(t, c, flash.ImageSpec{Path: raw})
	if full.SourceSHA256 != hex.EncodeToString(sum[:]) || !full.Cached || c.Preparations() != 1 {
		t.Errorf("Prepare: sha %s cached %v after %d preparations", full.SourceSHA256, full.Cached, c.Preparations())
	}
	// A wrong hash is refused even for the cached image.
	if _, err := c.Open(context.Background(), flash.ImageSpec{Path: raw, SHA256: strings.Repeat("00", 32)}, nil); !errors.Is(err, flash.ErrImageRefused) {
		t.Errorf("a wrong line hash of a cached image: %v", err)
	}
	// Another file with the same bytes, then that file rewritten.
	prepare(t, c, flash.ImageSpec{Path: own})
	if c.Preparations() != 2 {
		t.Errorf("%d preparations: another file is another image", c.Preparations())
	}
	changed := append([]byte(nil), content...)
	changed[5<<20] = 0x5a
	if err := os.WriteFile(own, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	img = prepare(t, c, flash.ImageSpec{Path: own})
	if c.Preparations() != 3 || img.Cached {
		t.Errorf("a rewritten file came from the cache (%d preparations)", c.Preparations())
	}
	ft, path := fileTarget(t, 0)
	if r := flash.Write(context.Background(), img, ft, flash.Options{Verify: true}); r.Failure != nil {
		t.Fatal(r.Failure)
	}
	if got := fileBytes(t, path); got[5<<20] != 0x5a {
		t.Error("the rewritten image's bytes were not flashed")
	}
}

// cacheEater truncates the prepared image under the flash at its first
// write, as a careless clean-up of the cache would.
type cacheEater struct {
	*flash.FileTarget
	raw  string
	once sync.Once
}

func (c *cacheEater) WriteAt(p []byte, off int64) (int, error) {
	c.once.Do(func() { os.Truncate(c.raw, 0) })
	return c.FileTarget.WriteAt(p, off)
}

// TestCacheTruncatedUnderTheFlash: a prepared image cut short while it is
// being written fails its target image-refused (the station's fault, not
// the board's), and the station does not crash on the mapped file.
func TestCacheTruncatedUnderTheFlash(t *testing.T) {
	raw, _ := sharedImage(t)
	dir := t.TempDir()
	own := filepath.Join(dir, "image.img")
	if err := os.WriteFile(own, fileBytes(t, raw), 0o644); err != nil {
		t.Fatal(err)
	}
	img := prepare(t, newCache(t), flash.ImageSpec{Path: own})
	ft, _ := fileTarget(t, 0)
	r := flash.Write(context.Background(), img, &cacheEater{FileTarget: ft, raw: img.RawPath}, flash.Options{Verify: true})
	if r.Failure == nil || r.Failure.Reason != flash.ReasonImage {
		t.Fatalf("%+v, want image-refused", r.Failure)
	}
	if errors.Is(r.Failure, syscall.EIO) {
		t.Errorf("blamed on the medium: %v", r.Failure)
	}
}

// hookTarget runs hook at its first write.
type hookTarget struct {
	*flash.FileTarget
	once sync.Once
	hook func()
}

func (h *hookTarget) WriteAt(p []byte, off int64) (int, error) {
	h.once.Do(h.hook)
	return h.FileTarget.WriteAt(p, off)
}

// TestStreamedImageChangedWhileRead: an image file rewritten while its
// first flash streams is refused at the end (its identity changed), so
// nothing is cached under the old file's name and no target boots it.
func TestStreamedImageChangedWhileRead(t *testing.T) {
	g := openGated(t, context.Background(), "exit 0")
	c, image, img, gate := g.c, g.image, g.img, g.gate
	ft, path := fileTarget(t, 0xaa)
	target := &hookTarget{FileTarget: ft, hook: func() {
		// Rewritten in place: the same bytes, but the file changed.
		data, _ := os.ReadFile(image)
		os.WriteFile(image, data, 0o644)
		os.WriteFile(gate, nil, 0o644)
	}}
	r := flash.Write(context.Background(), img, target, flash.Options{Verify: true})
	if r.Failure == nil || r.Failure.Reason != flash.ReasonImage || !strings.Contains(r.Failure.Detail, "changed while it was read") {
		t.Fatalf("%+v, want image-refused: changed while it was read", r.Failure)
	}
	if got := fileBytes(t, path); !bytes.Equal(got[:1<<20], make([]byte, 1<<20)) {
		t.Error("the target's boot area was not cleared")
	}
	noPreparedImage(t, c)
}

// TestJoinerHashIsChecked: a caller that joins a preparation already
// under way with a hash of its own gets the image only once that hash is
// checked: a wrong one is refused even though the first caller's flash,
// which gave none, goes on.
func TestJoinerHashIsChecked(t *testing.T) {
	g := openGated(t, context.Background(), "exit 0")
	c, image, img, gate, content := g.c, g.image, g.img, g.gate, g.content
	joined := make(chan error, 1)
	go func() {
		_, err := c.Open(context.Background(), flash.ImageSpec{Path: image, SHA256: strings.Repeat("ab", 32)}, nil)
		joined <- err
	}()
	ft, path := fileTarget(t, 0)
	gated := &gateTarget{FileTarget: ft, img: img, gate: gate}
	if r := flash.Write(context.Background(), img, gated, flash.Options{Verify: true}); r.Failure != nil {
		t.Fatalf("the first caller's flash: %v", r.Failure)
	}
	if d := firstDiff(fileBytes(t, path), content); d >= 0 {
		t.Errorf("differs at %d", d)
	}
	if err := <-joined; !errors.Is(err, flash.ErrImageRefused) || !strings.Contains(err.Error(), "the line expects abab") {
		t.Errorf("the joiner with a wrong hash: %v", err)
	}
	data, _ := os.ReadFile(image)
	sum := sha256.Sum256(data)
	if got, err := c.Open(context.Background(), flash.ImageSpec{Path: image, SHA256: hex.EncodeToString(sum[:])}, nil); err != nil || got.SourceSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("the right hash: %v (%+v)", err, got)
	}
}

// TestDamagedCacheNeverFlashed: a prepared image whose cache file was
// written to after it was prepared (its identity is no longer the one
// its manifest recorded) is checked chunk by chunk against the manifest
// as it is flashed: refused by the next station, set aside, and prepared
// anew by the flash after.
func TestDamagedCacheNeverFlashed(t *testing.T) {
	raw, content := sharedImage(t)
	dir := filepath.Join(t.TempDir(), "cache")
	c, _ := flash.NewCache(dir)
	c.SetChunkSize(1 << 20)
	img := prepare(t, c, flash.ImageSpec{Path: raw})
	f, err := os.OpenFile(img.RawPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0x42}, 10<<20+5)
	f.Close()

	c2, _ := flash.NewCache(dir) // a restarted station
	c2.SetChunkSize(1 << 20)
	again := prepare(t, c2, flash.ImageSpec{Path: raw})
	if !again.Cached {
		t.Fatal("not from the cache")
	}
	ft, _ := fileTarget(t, 0)
	r := flash.Write(context.Background(), again, ft, flash.Options{Verify: true})
	if r.Failure == nil || r.Failure.Reason != flash.ReasonImage || !strings.Contains(r.Failure.Detail, "damaged") {
		t.Fatalf("%+v, want image-refused: damaged", r.Failure)
	}
	c3, _ := flash.NewCache(dir)
	c3.SetChunkSize(1 << 20)
	fresh := prepare(t, c3, flash.ImageSpec{Path: raw})
	if fresh.Cached || c3.Preparations() != 1 {
		t.Errorf("the damaged image came from the cache again: cached %v", fresh.Cached)
	}
	ft2, path := fileTarget(t, 0)
	if r := flash.Write(context.Background(), fresh, ft2, flash.Options{Verify: true}); r.Failure != nil {
		t.Fatal(r.Failure)
	}
	if d := firstDiff(fileBytes(t, path), content); d >= 0 {
		t.Errorf("differs at %d", d)
	}
}

// TestStreamStopped: a flash stopped while its image streams ends its
// targets cancelled (not image-refused: the image did nothing wrong),
// clears the boot area of a target that took part of it, and caches
// nothing.
func TestStreamStopped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := openGated(t, ctx, "exit 0") // the gate never opens: the stop ends it
	c, img := g.c, g.img
	ft, path := fileTarget(t, 0xaa)
	target := &hookTarget{FileTarget: ft, hook: cancel}
	r := flash.Write(ctx, img, target, flash.Options{Verify: true})
	if r.Failure == nil || r.Failure.Reason != flash.ReasonCancelled || !strings.Contains(r.Failure.Detail, "boot area was cleared") {
		t.Fatalf("%+v, want cancelled with the boot area cleared", r.Failure)
	}
	if got := fileBytes(t, path); !bytes.Equal(got[:1<<20], make([]byte, 1<<20)) {
		t.Error("the boot area still holds data")
	}
	if _, err := img.Wait(context.Background()); err == nil {
		t.Error("the stopped preparation succeeded")
	}
	noPreparedImage(t, c)
}

// TestStreamStoppedInProcess: a first flash stopped while an in-process
// decoder (zstd, gzip, the pure-Go xz) streams the image ends as
// cancelled: the preparation's read-ahead stops before the decoder is
// closed (the race detector sees a decoder closed under a read), nothing
// is cached, and nothing hangs.
func TestStreamStoppedInProcess(t *testing.T) {
	for _, format := range []string{"zst", "gz", "xz"} {
		t.Run(format, func(t *testing.T) {
			if format == "xz" {
				defer flash.UsePureGoXz()()
			}
			image := sharedCompressed(t, format)
			c := newCache(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			img, err := c.Open(ctx, flash.ImageSpec{Path: image}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ft, _ := fileTarget(t, 0xaa)
			target := &hookTarget{FileTarget: ft, hook: cancel}
			r := flash.Write(ctx, img, target, flash.Options{Verify: true})
			if r.Failure == nil || r.Failure.Reason != flash.ReasonCancelled {
				t.Fatalf("%+v, want cancelled", r.Failure)
			}
			_, err = img.Wait(context.Background())
			// Stopped mid-way (cancelled), or done before the stop landed:
			// never refused.
			if errors.Is(err, flash.ErrImageRefused) {
				t.Fatalf("a stopped preparation refused the image: %v", err)
			}
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("stopped preparation: %v, want context.Canceled", err)
				}
				noPreparedImage(t, c)
			}
		})
	}
}
