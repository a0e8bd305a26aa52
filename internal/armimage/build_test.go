package armimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/flashstation/flashstation/internal/armimage/seedconf"
)

// needTools skips when the image tools are missing.
func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []struct{ bin, pkg string }{{"sgdisk", "gdisk"}, {"mkfs.vfat", "dosfstools"}, {"mcopy", "mtools"}, {"mmd", "mtools"}} {
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
	must(t, os.WriteFile(filepath.Join(dir, "vmlinuz"), bytes.Repeat([]byte("zImage!!"), 300_000), 0o644))
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
}
