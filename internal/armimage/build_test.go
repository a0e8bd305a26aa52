package armimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/internal/armimage/seedconf"
	"github.com/flashstation/flashstation/internal/seedimage"
	"github.com/flashstation/flashstation/seed"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

// needTools skips when the image tools are missing.
func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []struct{ bin, pkg string }{{"sgdisk", "gdisk"}, {"mkfs.vfat", "dosfstools"}, {"mcopy", "mtools"}, {"mmd", "mtools"}, {"mksquashfs", "squashfs-tools"}, {"unsquashfs", "squashfs-tools"}} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			t.Skipf("%s is missing (Debian package %s; make deps installs it)", tool.bin, tool.pkg)
		}
	}
}

// fakeKernelDir is a kernel asset dir with made-up bytes.
func fakeKernelDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "modules"), 0o755))
	// A run of zeros longer than a bmap block and a copy chunk inside
	// the kernel: a block map must still map it.
	kernel := slices.Concat(bytes.Repeat([]byte("zImage!!"), 150_000), make([]byte, 200<<10), bytes.Repeat([]byte("zImage!!"), 150_000))
	must(t, os.WriteFile(filepath.Join(dir, "vmlinuz"), kernel, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "modules", "order"), []byte("a.ko\nb.ko\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "modules", "a.ko"), []byte("module a"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "modules", "b.ko"), []byte("module b"), 0o644))
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return sha256.Sum256(b)
}

func TestBuildIsReproducibleAndCached(t *testing.T) {
	needTools(t)
	ctx := context.Background()
	kdir := fakeKernelDir(t)
	initBin := filepath.Join(t.TempDir(), "init")
	must(t, os.WriteFile(initBin, []byte("\x7fELF not really, and "+seedconf.Header), 0o755))
	cfg := Config{KernelDir: kdir, Init: initBin, Model: []byte("type: model\n"), Label: "20240210", CacheDir: t.TempDir()}

	start := time.Now()
	a, err := Build(ctx, cfg)
	must(t, err)
	cold := time.Since(start)
	start = time.Now()
	again, err := Build(ctx, cfg)
	must(t, err)
	t.Logf("build: cold %v, cached %v", cold, time.Since(start))
	if a.Cached || !again.Cached || again.Path != a.Path {
		t.Errorf("cache: first %+v, second %+v", a, again)
	}

	cfg2 := cfg
	cfg2.CacheDir = t.TempDir()
	b, err := Build(ctx, cfg2)
	must(t, err)
	if b.Cached || b.Hash != a.Hash {
		t.Errorf("second cache: %+v, want a build with hash %s", b, a.Hash)
	}
	if sum(t, a.Path) != sum(t, b.Path) {
		t.Fatal("the same inputs gave different images")
	}
	fi, err := os.Stat(a.Path)
	must(t, err)
	if fi.Size() != DiskSize {
		t.Errorf("image is %d bytes, want %d", fi.Size(), DiskSize)
	}

	// Another fault is another image; SetFault turns one into the other.
	cfg3 := cfg2
	cfg3.Fault = seedconf.FaultSeedError
	c, err := Build(ctx, cfg3)
	must(t, err)
	if c.Hash == a.Hash {
		t.Fatal("the fault does not change the input hash")
	}
	patched := filepath.Join(t.TempDir(), "disk.img")
	data, err := os.ReadFile(a.Path)
	must(t, err)
	must(t, os.WriteFile(patched, data, 0o644))
	must(t, SetFault(patched, seedconf.FaultSeedError))
	if sum(t, patched) != sum(t, c.Path) {
		t.Error("SetFault on the image differs from the image built with the fault")
	}

	// mtools reads back what the seed holds.
	out, err := exec.Command("mdir", "-/", "-i", a.Path+"@@1M", "::").CombinedOutput()
	must(t, err)
	for _, want := range []string{"extlinux", "kernel", "initrd", "systems", "model"} {
		if !bytes.Contains(bytes.ToLower(out), []byte(want)) {
			t.Errorf("mdir of the seed lacks %s:\n%s", want, out)
		}
	}
	// Every record carries the fixed epoch, none the clock (the two
	// builds above may have run within the same second).
	fixed := time.Unix(epoch, 0).UTC().Format("2006-01-02  15:04")
	if n := bytes.Count(out, []byte(fixed)); n < 10 {
		t.Errorf("only %d of the seed's records are dated %s:\n%s", n, fixed, out)
	}
	if today := time.Now().UTC().Format("2006-01-02"); bytes.Contains(out, []byte(today)) {
		t.Errorf("a record of the seed is dated today (%s):\n%s", today, out)
	}
	t.Logf("seed:\n%s", out)

	// The bmap: the same for the same inputs, and enough to flash with.
	if sum(t, a.Bmap) != sum(t, b.Bmap) {
		t.Error("the same inputs gave different bmaps")
	}
	flashWithBmap(t, a, filepath.Join(kdir, "vmlinuz"))
}

// flashWithBmap flashes img with its bmap through the station's own
// pipeline onto a disk full of old bytes, then reads the seed's files
// back with mtools: the bmap maps every block the files and the FAT use,
// and little else.
func flashWithBmap(t *testing.T, img Image, kernel string) {
	t.Helper()
	bm, err := flash.ReadBmap(img.Bmap)
	must(t, err)
	mapped := bm.MappedBlocks * bm.BlockSize
	if mapped > DiskSize/2 {
		t.Errorf("the bmap maps %d of the image's %d bytes: the free space is mapped", mapped, DiskSize)
	}
	ctx := context.Background()
	c, err := flash.NewCache(t.TempDir())
	must(t, err)
	prep, err := c.Prepare(ctx, flash.ImageSpec{Path: img.Path, Bmap: img.Bmap}, nil)
	must(t, err)
	disk := filepath.Join(t.TempDir(), "emmc.img")
	must(t, os.WriteFile(disk, bytes.Repeat([]byte{0xe5}, DiskSize), 0o644))
	target, err := flash.OpenFileTarget(disk)
	must(t, err)
	r := flash.Write(ctx, prep, target, flash.Options{Verify: true})
	target.Close()
	if r.Failure != nil || !r.Verified {
		t.Fatalf("flash with the bmap: %+v", r.Failure)
	}
	if out, err := exec.Command("sgdisk", "--verify", disk).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("No problems found")) {
		t.Errorf("sgdisk --verify of the flashed disk: %v\n%s", err, out)
	}
	back := filepath.Join(t.TempDir(), "kernel")
	if out, err := exec.Command("mcopy", "-n", "-i", disk+"@@1M", "::"+KernelPath, back).CombinedOutput(); err != nil {
		t.Fatalf("mcopy the kernel off the flashed disk: %v\n%s", err, out)
	}
	if sum(t, back) != sum(t, kernel) {
		t.Error("the kernel read off a disk flashed with the bmap differs: the bmap misses some of its blocks")
	}
	if out, err := exec.Command("mdir", "-/", "-i", disk+"@@1M", "::").CombinedOutput(); err != nil || !bytes.Contains(bytes.ToLower(out), []byte("model")) {
		t.Errorf("mdir of the flashed seed: %v\n%s", err, out)
	}
	t.Logf("bmap: %d ranges, %d of %d bytes mapped", len(bm.Ranges), mapped, DiskSize)
}

// TestGadgetSnap: the image of a model naming a gadget holds that gadget
// snap, with its prepare-device hook and a gadget.yaml whose ubuntu-seed
// is the partition sgdisk reports; the same inputs give the same image.
func TestGadgetSnap(t *testing.T) {
	needTools(t)
	ctx := context.Background()
	kdir := fakeKernelDir(t)
	initBin := filepath.Join(t.TempDir(), "init")
	must(t, os.WriteFile(initBin, []byte("\x7fELF not really"), 0o755))
	model, err := serialvault.Sign(map[string]any{
		"type": "model", "authority-id": "acme", "series": "16", "brand-id": "acme", "model": "qemu-armhf",
		"architecture": "armhf", "base": "core22", "grade": "signed", "timestamp": "2026-01-01T00:00:00Z",
		"snaps": []any{
			map[string]any{"name": "acme-qemu-gadget", "id": "AcmeGadgetSnapId0000000000000001", "type": "gadget"},
			map[string]any{"name": "pi-kernel", "id": "jeIuP6tfFrvAdic8DMWqHmoaoukAPNbJ", "type": "kernel"},
		},
	}, nil, vaulttest.TestKey(0), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	must(t, err)
	cfg := Config{KernelDir: kdir, Init: initBin, Model: model.Encode(), Label: "20260101", CacheDir: t.TempDir()}
	a, err := Build(ctx, cfg)
	must(t, err)
	cfg.CacheDir = t.TempDir()
	b, err := Build(ctx, cfg)
	must(t, err)
	if sum(t, a.Path) != sum(t, b.Path) {
		t.Error("the same inputs gave different images")
	}
	snap := filepath.Join(t.TempDir(), "gadget.snap")
	if out, err := exec.Command("mcopy", "-n", "-i", a.Path+"@@1M", "::/snaps/acme-qemu-gadget_1.snap", snap).CombinedOutput(); err != nil {
		t.Fatalf("mcopy the gadget snap: %v\n%s", err, out)
	}
	list, err := exec.Command("unsquashfs", "-lls", snap).CombinedOutput()
	must(t, err)
	if !bytes.Contains(list, []byte("squashfs-root/meta/hooks/prepare-device")) || !bytes.Contains(list, []byte("-rwxr-xr-x root/root")) {
		t.Errorf("the gadget snap holds:\n%s", list)
	}
	meta, err := exec.Command("unsquashfs", "-cat", snap, "meta/snap.yaml").CombinedOutput()
	must(t, err)
	if !bytes.Contains(meta, []byte("name: acme-qemu-gadget\n")) || !bytes.Contains(meta, []byte("type: gadget\n")) {
		t.Errorf("meta/snap.yaml:\n%s", meta)
	}
	gy, err := exec.Command("unsquashfs", "-cat", snap, "meta/gadget.yaml").CombinedOutput()
	must(t, err)
	info, err := exec.Command("sgdisk", "-i", "1", a.Path).CombinedOutput()
	must(t, err)
	var first, last int64
	for _, l := range strings.Split(string(info), "\n") {
		fmt.Sscanf(l, "First sector: %d", &first)
		fmt.Sscanf(l, "Last sector: %d", &last)
	}
	for _, want := range []string{
		"name: ubuntu-seed\n", "role: system-seed\n", "filesystem: vfat\n", "filesystem-label: ubuntu-seed\n",
		fmt.Sprintf("offset: %d\n", first*512), fmt.Sprintf("size: %d\n", (last-first+1)*512),
	} {
		if !bytes.Contains(gy, []byte(want)) {
			t.Errorf("gadget.yaml lacks %q:\n%s", want, gy)
		}
	}
	if typ := regexp.MustCompile(`Partition GUID code: (\S+)`).FindSubmatch(info); typ == nil || !bytes.Contains(gy, []byte("type: "+string(typ[1])+"\n")) {
		t.Errorf("gadget.yaml's type is not the partition's (%s):\n%s", info, gy)
	}
	// What the peers read of the image passes the gate for its model.
	img, err := seedimage.Inspect(ctx, a.Path)
	must(t, err)
	m, err := serialvault.AsModel(model)
	must(t, err)
	keys := serialvault.NewKeyRing()
	must(t, keys.AddData("test key", []byte(vaulttest.TestKey(0).Public().Encode())))
	if v := seed.Check(img, seed.Expect{Model: m, Keys: keys}); !v.Pass {
		t.Errorf("the gate refuses the image: %+v", v.Problems)
	}
	label, err := exec.Command("mlabel", "-s", "-i", a.Path+"@@1M", "::").CombinedOutput()
	if err == nil && !bytes.Contains(bytes.ToLower(label), []byte("ubuntu-seed")) {
		t.Errorf("the seed's label: %s", label)
	}
}

// TestPruneKeepsRecentImages: the cache keeps the images used last and
// any used within the hour, and drops what a killed build left.
func TestPruneKeepsRecentImages(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	touch := func(name string, age time.Duration) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(name), 0o644))
		must(t, os.Chtimes(p, now.Add(-age), now.Add(-age)))
		return p
	}
	// image-0 is the newest; image-5 the oldest, and the one in use.
	var imgs []string
	for i := range 6 {
		p := touch(fmt.Sprintf("image-%d.img", i), time.Duration(i+1)*2*time.Hour)
		touch(fmt.Sprintf("image-%d.img.bmap", i), time.Duration(i+1)*2*time.Hour)
		imgs = append(imgs, p)
	}
	recent := touch("image-r.img", 10*time.Minute) // used within the hour
	other := touch("notes.txt", 100*time.Hour)
	must(t, os.Mkdir(filepath.Join(dir, ".build-old"), 0o755))
	must(t, os.Chtimes(filepath.Join(dir, ".build-old"), now.Add(-2*time.Hour), now.Add(-2*time.Hour)))
	must(t, os.Mkdir(filepath.Join(dir, ".build-now"), 0o755))

	prune(dir, imgs[5], now)

	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	// Kept: image-5 (used now), image-r (within the hour), image-0 and
	// image-1 (with those two, the 4 used last).
	for i, want := range []bool{true, true, false, false, false, true} {
		if exists(imgs[i]) != want || exists(imgs[i]+".bmap") != want {
			t.Errorf("image-%d: kept %v, want %v", i, exists(imgs[i]), want)
		}
	}
	if !exists(recent) || !exists(other) {
		t.Error("pruned an image used within the hour, or a file that is not an image")
	}
	if exists(filepath.Join(dir, ".build-old")) || !exists(filepath.Join(dir, ".build-now")) {
		t.Error("build directories: want the stale one gone and the live one kept")
	}
}
