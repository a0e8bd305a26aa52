package flash_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/flashstation/flashstation/flash"
)

func TestDetectFormat(t *testing.T) {
	for _, tc := range []struct {
		head []byte
		want flash.Format
	}{
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0}, flash.FormatZstd},
		{[]byte{0x1f, 0x8b, 8}, flash.FormatGzip},
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0, 0}, flash.FormatXz},
		{[]byte("EFI PART"), flash.FormatRaw},
		{nil, flash.FormatRaw},
	} {
		if got := flash.DetectFormat(tc.head); got != tc.want {
			t.Errorf("DetectFormat(%x) = %s, want %s", tc.head, got, tc.want)
		}
	}
}

// TestEverySourceFormat prepares the image from each format (detected by
// content: the compressed copies are renamed .img) and writes it to a fresh
// file, which must equal the image byte for byte.
func TestEverySourceFormat(t *testing.T) {
	raw, content := sharedImage(t)
	for _, format := range []string{"raw", "zst", "gz", "xz", "xz-pure-go"} {
		t.Run(format, func(t *testing.T) {
			src := raw
			if format != "raw" {
				f := format
				if format == "xz-pure-go" {
					defer flash.UsePureGoXz()()
					f = "xz"
				}
				// Named .img: the format is found from the content.
				src = filepath.Join(t.TempDir(), "image.img")
				if err := os.WriteFile(src, fileBytes(t, sharedCompressed(t, f)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			img := prepare(t, newCache(t), flash.ImageSpec{Path: src})
			wantFormat := map[string]flash.Format{"raw": flash.FormatRaw, "zst": flash.FormatZstd, "gz": flash.FormatGzip, "xz": flash.FormatXz, "xz-pure-go": flash.FormatXz}[format]
			if img.Format != wantFormat || img.Size != imageSize {
				t.Fatalf("format %s size %d", img.Format, img.Size)
			}
			checkCovers(t, img, content)
			if img.MappedBytes >= imageSize/2 {
				t.Errorf("mapped %d of %d bytes: holes not skipped", img.MappedBytes, imageSize)
			}
			target := filepath.Join(t.TempDir(), "target.img")
			ft, err := flash.OpenFileTarget(target)
			if err != nil {
				t.Fatal(err)
			}
			res := flash.Write(context.Background(), img, ft, flash.Options{Verify: true})
			ft.Close()
			if res.Failure != nil || !res.Verified || res.WrittenBytes != img.MappedBytes {
				t.Fatalf("result %+v", res)
			}
			if i := firstDiff(fileBytes(t, target), content); i >= 0 {
				t.Fatalf("target differs from the image at byte %d", i)
			}
		})
	}
}

func TestCorruptImagesRefused(t *testing.T) {
	dir := t.TempDir()
	raw, _ := sharedImage(t)
	sum := sha256.Sum256(fileBytes(t, raw))
	xzPath := sharedCompressed(t, "xz")
	truncated := filepath.Join(dir, "truncated.xz")
	data := fileBytes(t, xzPath)
	os.WriteFile(truncated, data[:len(data)/2], 0o644)
	zst := sharedCompressed(t, "zst")
	zdata := fileBytes(t, zst)
	garbled := append([]byte(nil), zdata...)
	for i := 40; i < 80; i++ {
		garbled[i] ^= 0xff
	}
	garbledPath := filepath.Join(dir, "garbled.zst")
	os.WriteFile(garbledPath, garbled, 0o644)

	for _, tc := range []struct {
		name string
		spec flash.ImageSpec
		want string
	}{
		{"wrong sha256", flash.ImageSpec{Path: raw, SHA256: strings.Repeat("ab", 32)}, "the line expects"},
		{"truncated xz", flash.ImageSpec{Path: truncated}, "decompress"},
		{"garbled zstd", flash.ImageSpec{Path: garbledPath}, "decompress"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			_, err := c.Prepare(context.Background(), tc.spec, nil)
			if !errors.Is(err, flash.ErrImageRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrImageRefused with %q", err, tc.want)
			}
		})
	}
	// The right hash passes, in either case.
	if _, err := newCache(t).Prepare(context.Background(), flash.ImageSpec{Path: raw, SHA256: strings.ToUpper(hex.EncodeToString(sum[:]))}, nil); err != nil {
		t.Errorf("right sha256 refused: %v", err)
	}
}

func needBmaptool(t *testing.T) {
	if _, err := exec.LookPath("bmaptool"); err != nil {
		t.Skip("bmaptool not installed (apt-get install bmap-tools)")
	}
}

// TestBmapFromBmaptool honours a bmap made by Debian's bmaptool: its zero-
// filled allocated range is mapped (written as zeros over old data), holes
// keep the target's old bytes, and a corrupt image is refused.
func TestBmapFromBmaptool(t *testing.T) {
	needBmaptool(t)
	dir := t.TempDir()
	raw, content := sharedImage(t)
	bmapPath := filepath.Join(dir, "image.bmap")
	out, err := exec.Command("bmaptool", "create", "-o", bmapPath, raw).CombinedOutput()
	if err != nil {
		t.Fatalf("bmaptool create: %v %s", err, out)
	}
	bm, err := flash.ReadBmap(bmapPath)
	if err != nil {
		t.Fatal(err)
	}
	if bm.ChecksumType != "sha256" || bm.ImageSize != imageSize || len(bm.Ranges) == 0 {
		t.Fatalf("bmap %+v", bm)
	}
	xzPath := sharedCompressed(t, "xz")
	img := prepare(t, newCache(t), flash.ImageSpec{Path: xzPath, Bmap: bmapPath})
	if img.Bmap == nil || img.MappedBytes != bm.MappedBlocks*bm.BlockSize-(bm.BlocksCount*bm.BlockSize-imageSize) {
		t.Errorf("mapped %d, bmap maps %d blocks", img.MappedBytes, bm.MappedBlocks)
	}

	// A target full of old data.
	target := filepath.Join(dir, "target.img")
	old := bytes.Repeat([]byte{0xee}, imageSize)
	os.WriteFile(target, old, 0o644)
	ft, _ := flash.OpenFileTarget(target)
	res := flash.Write(context.Background(), img, ft, flash.Options{Verify: true})
	ft.Close()
	if res.Failure != nil || !res.Verified {
		t.Fatalf("%+v", res)
	}
	got := fileBytes(t, target)
	for _, r := range testRegions {
		if i := firstDiff(got[r.off:r.off+r.length], content[r.off:r.off+r.length]); i >= 0 {
			t.Errorf("region at %d differs at +%d (zero-filled: %v)", r.off, i, r.zero)
		}
	}
	if got[8<<20] != 0xee {
		t.Error("a hole was written: bmap holes keep the target's bytes")
	}

	// Flip one byte of mapped data: the bmap's range checksum refuses it.
	bad := append([]byte(nil), fileBytes(t, raw)...)
	bad[10<<20] ^= 1
	badPath := filepath.Join(dir, "bad.img")
	os.WriteFile(badPath, bad, 0o644)
	_, err = newCache(t).Prepare(context.Background(), flash.ImageSpec{Path: badPath, Bmap: bmapPath}, nil)
	if !errors.Is(err, flash.ErrImageRefused) || !strings.Contains(err.Error(), "bmap's checksum") {
		t.Errorf("corrupt image with bmap: %v", err)
	}
	// A bmap edited by hand fails its own checksum.
	edited := bytes.Replace(fileBytes(t, bmapPath), []byte("<ImageSize> "), []byte("<ImageSize>  "), 1)
	editedPath := filepath.Join(dir, "edited.bmap")
	os.WriteFile(editedPath, edited, 0o644)
	if _, err := flash.ReadBmap(editedPath); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("edited bmap: %v", err)
	}
}

func TestCacheSharesAndSurvives(t *testing.T) {
	dir := t.TempDir()
	xzPath := sharedCompressed(t, "xz")
	cacheDir := filepath.Join(dir, "cache")
	c, _ := flash.NewCache(cacheDir)
	var wg sync.WaitGroup
	imgs := make([]*flash.Prepared, 8)
	for i := range imgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			img, err := c.Prepare(context.Background(), flash.ImageSpec{Path: xzPath}, nil)
			if err != nil {
				t.Error(err)
			}
			imgs[i] = img
		}()
	}
	wg.Wait()
	if n := c.Preparations(); n != 1 {
		t.Errorf("decompressed %d times for 8 concurrent requests", n)
	}
	for _, img := range imgs {
		if img == nil || img.Key != imgs[0].Key {
			t.Fatal("requests got different images")
		}
	}
	// A new process (a new Cache on the same directory) finds it.
	c2, _ := flash.NewCache(cacheDir)
	img := prepare(t, c2, flash.ImageSpec{Path: xzPath})
	if c2.Preparations() != 0 || img.Key != imgs[0].Key || len(img.Chunks) != len(imgs[0].Chunks) {
		t.Errorf("restart re-prepared (%d) or differs", c2.Preparations())
	}
	// An interrupted preparation (no manifest) is redone.
	os.Remove(filepath.Join(cacheDir, img.Key, "manifest.json"))
	c3, _ := flash.NewCache(cacheDir)
	prepare(t, c3, flash.ImageSpec{Path: xzPath})
	if c3.Preparations() != 1 {
		t.Error("incomplete cache entry was used")
	}
}

// faultyTarget wraps a file target with injected failures.
type faultyTarget struct {
	*flash.FileTarget
	name       string
	failAt     int64        // writes reaching this offset fail
	failErr    error        // with this error
	transients atomic.Int32 // first writes fail with EIO
	gone       atomic.Bool
	corruptAt  int64 // reads of this offset return a flipped byte
}

func (f *faultyTarget) Name() string { return f.name }

func (f *faultyTarget) WriteAt(p []byte, off int64) (int, error) {
	if f.transients.Load() > 0 {
		f.transients.Add(-1)
		return 0, syscall.EIO
	}
	if f.failAt > 0 && off+int64(len(p)) > f.failAt {
		if errors.Is(f.failErr, syscall.ENODEV) {
			f.gone.Store(true)
		}
		return 0, f.failErr
	}
	return f.FileTarget.WriteAt(p, off)
}

func (f *faultyTarget) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.FileTarget.ReadAt(p, off)
	if f.corruptAt > 0 && off <= f.corruptAt && f.corruptAt < off+int64(n) {
		p[f.corruptAt-off] ^= 0x40
	}
	return n, err
}

func (f *faultyTarget) Gone() bool { return f.gone.Load() }

func newFaulty(t *testing.T, name string) *faultyTarget {
	ft, err := flash.OpenFileTarget(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ft.Close() })
	return &faultyTarget{FileTarget: ft, name: name}
}

// TestFailuresStayAlone flashes five targets at once: one unplugged, one
// with a write error, one reading back wrong, one with transient errors;
// each fails (or recovers) alone with its reason, and the good ones pass.
func TestFailuresStayAlone(t *testing.T) {
	raw, content := sharedImage(t)
	img := prepare(t, newCache(t), flash.ImageSpec{Path: raw})
	good := newFaulty(t, "good")
	unplugged := newFaulty(t, "unplugged")
	unplugged.failAt, unplugged.failErr = 10<<20, syscall.ENODEV
	writeErr := newFaulty(t, "write-error")
	writeErr.failAt, writeErr.failErr = 12<<20, syscall.ENOSPC
	corrupt := newFaulty(t, "corrupt")
	corrupt.corruptAt = 10<<20 + 777
	flaky := newFaulty(t, "flaky")
	flaky.transients.Store(2)
	// A direct-I/O target (aligned buffers, padded tail).
	direct := &directTarget{newFaulty(t, "corrupt-direct")}
	direct.corruptAt = 20<<20 + 5
	targets := []flash.Target{good, unplugged, writeErr, corrupt, flaky, direct}
	results := flash.WriteAll(context.Background(), img, targets, flash.Options{Verify: true})
	want := []struct {
		reason string
		offset int64
	}{{"", 0}, {flash.ReasonUnplugged, -1}, {flash.ReasonWriteError, -2}, {flash.ReasonVerify, 10<<20 + 777}, {"", 0}, {flash.ReasonVerify, 20<<20 + 5}}
	for i, r := range results {
		name := targets[i].Name()
		if want[i].reason == "" {
			if r.Failure != nil || !r.Verified {
				t.Errorf("%s: %+v", name, r.Failure)
			}
			continue
		}
		if r.Failure == nil || r.Failure.Reason != want[i].reason {
			t.Errorf("%s: failure %v, want %s", name, r.Failure, want[i].reason)
			continue
		}
		if want[i].offset >= 0 && r.Failure.Offset != want[i].offset {
			t.Errorf("%s: offset %d, want %d (the first bad byte)", name, r.Failure.Offset, want[i].offset)
		}
		if want[i].offset == -2 && (r.Failure.Offset < 11<<20 || !strings.Contains(r.Failure.Error(), "no space left")) {
			t.Errorf("%s: %v", name, r.Failure)
		}
	}
	for _, ft := range []*faultyTarget{good, flaky} {
		got := make([]byte, imageSize)
		ft.FileTarget.ReadAt(got, 0)
		if i := firstDiff(got, content); i >= 0 {
			t.Errorf("%s differs at %d", ft.name, i)
		}
	}
}

// TestFirstMiBWrittenLast checks the write order: the boot area last.
func TestFirstMiBWrittenLast(t *testing.T) {
	raw, _ := sharedImage(t)
	img := prepare(t, newCache(t), flash.ImageSpec{Path: raw})
	rec := &orderTarget{faultyTarget: newFaulty(t, "order")}
	res := flash.Write(context.Background(), img, rec, flash.Options{})
	if res.Failure != nil {
		t.Fatal(res.Failure)
	}
	if len(rec.offsets) < 3 || rec.offsets[len(rec.offsets)-1] != 0 {
		t.Fatalf("write offsets %v: the first MiB must come last", rec.offsets)
	}
	for _, off := range rec.offsets[:len(rec.offsets)-1] {
		if off < 1<<20 {
			t.Errorf("offset %d written before the end", off)
		}
	}
	if res.VerifyNote == "" {
		t.Error("skipped verification not said")
	}
}

// directTarget claims direct I/O (sector alignment): buffers, offsets and
// lengths are then sector-aligned.
type directTarget struct{ *faultyTarget }

func (d *directTarget) Align() int { return 512 }

type orderTarget struct {
	*faultyTarget
	mu      sync.Mutex
	offsets []int64
}

func (o *orderTarget) WriteAt(p []byte, off int64) (int, error) {
	o.mu.Lock()
	o.offsets = append(o.offsets, off)
	o.mu.Unlock()
	return o.faultyTarget.WriteAt(p, off)
}

func TestTooSmallAndProgress(t *testing.T) {
	raw, _ := sharedImage(t)
	img := prepare(t, newCache(t), flash.ImageSpec{Path: raw})
	small := &sizedTarget{faultyTarget: newFaulty(t, "small"), capacity: 8 << 20}
	if r := flash.Write(context.Background(), img, small, flash.Options{}); r.Failure == nil || r.Failure.Reason != flash.ReasonTooSmall {
		t.Errorf("small target: %+v", r.Failure)
	}
	var mu sync.Mutex
	var last flash.Progress
	phases := map[string]bool{}
	slow := flash.Throttle(newFaulty(t, "slow"), 40e6)
	r := flash.Write(context.Background(), img, slow, flash.Options{Verify: true, ProgressEvery: 1, Progress: func(p flash.Progress) {
		mu.Lock()
		last = p
		phases[p.Phase] = true
		mu.Unlock()
	}})
	if r.Failure != nil {
		t.Fatal(r.Failure)
	}
	if !phases["write"] || !phases["verify"] || last.Done != last.Total || last.Total != img.MappedBytes || last.Rate <= 0 {
		t.Errorf("progress %+v phases %v", last, phases)
	}
	// 40 MB/s for writing and reading back the mapped bytes: the throttle holds.
	if min := 2 * float64(img.MappedBytes) / 40e6; (r.WriteTime + r.VerifyTime).Seconds() < min*0.9 {
		t.Errorf("throttled target took %v, want about %.2fs", r.WriteTime+r.VerifyTime, min)
	}
}

type sizedTarget struct {
	*faultyTarget
	capacity int64
}

func (s *sizedTarget) Capacity() int64 { return s.capacity }

// TestCancel stops a write once its first piece is on the target: the
// write ends cancelled, whatever the machine's speed.
func TestCancel(t *testing.T) {
	raw, _ := sharedImage(t)
	img := prepare(t, newCache(t), flash.ImageSpec{Path: raw})
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	r := flash.Write(ctx, img, newFaulty(t, "cancelled"), flash.Options{ProgressEvery: 1,
		Progress: func(p flash.Progress) {
			if p.Done > 0 && p.Done < p.Total {
				once.Do(cancel)
			}
		}})
	if r.Failure == nil || r.Failure.Reason != flash.ReasonCancelled {
		t.Errorf("cancelled write: %+v", r.Failure)
	}
}
