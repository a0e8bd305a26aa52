package sim_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/flashstation/flashstation/internal/seedimage"
	"github.com/flashstation/flashstation/seed"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/sim"
)

// TestBenchImage: the bench's image is a real Ubuntu Core 20+ image, as
// Debian's tools read it: a GPT with ubuntu-seed at 1 MiB holding the
// bench's model and snaps, the gadget acme-gadget with its
// prepare-device hook; about a tenth of it is data. A bench opened again
// keeps it; an image in an older format is built again.
func TestBenchImage(t *testing.T) {
	if err := seedimage.Available(); err != nil {
		t.Skip(err)
	}
	for _, bin := range []string{"mtype", "mdir", "unsquashfs", "sgdisk"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is missing (Debian packages mtools, squashfs-tools, gdisk)", bin)
		}
	}
	dir := t.TempDir()
	ctx := context.Background()
	open := func() *sim.Bench {
		t.Helper()
		b, err := sim.NewBench(ctx, sim.BenchConfig{Dir: dir, Boards: 0, FastKeys: true})
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
		return b
	}
	b := open()
	if b.Image.Size != 64<<20 || b.Image.MappedBytes < b.Image.Size/20 || b.Image.MappedBytes > b.Image.Size/5 {
		t.Errorf("the image maps %d of its %d bytes, want about a tenth", b.Image.MappedBytes, b.Image.Size)
	}
	zst := filepath.Join(dir, "image.img.zst")
	raw := filepath.Join(t.TempDir(), "image.img")
	unzstd(t, zst, raw)
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	if out := run("sgdisk", "-i", "1", raw); !strings.Contains(out, "Partition name: 'ubuntu-seed'") || !strings.Contains(out, "First sector: 2048 ") {
		t.Errorf("sgdisk -i 1:\n%s", out)
	}
	seedFS := raw + "@@1M"
	model, err := os.ReadFile(filepath.Join(dir, "model.assert"))
	if err != nil {
		t.Fatal(err)
	}
	if got := run("mtype", "-i", seedFS, "::/systems/20260901/model"); got != string(model) {
		t.Errorf("systems/20260901/model is not model.assert:\n%s", got)
	}
	snaps := run("mdir", "-b", "-i", seedFS, "::/snaps")
	for _, s := range []string{"acme-gadget_1.snap", "pi-kernel_1.snap", "core22_1.snap", "snapd_1.snap"} {
		if !strings.Contains(snaps, s) {
			t.Errorf("snaps/ lacks %s:\n%s", s, snaps)
		}
	}
	gadget := filepath.Join(t.TempDir(), "gadget.snap")
	run("mcopy", "-n", "-i", seedFS, "::/snaps/acme-gadget_1.snap", gadget)
	if out := run("unsquashfs", "-l", gadget); !strings.Contains(out, "meta/hooks/prepare-device") || !strings.Contains(out, "meta/gadget.yaml") {
		t.Errorf("the gadget snap holds:\n%s", out)
	}
	if y := run("unsquashfs", "-cat", gadget, "meta/gadget.yaml"); !strings.Contains(y, "role: system-seed") || !strings.Contains(y, "offset: 1048576") {
		t.Errorf("gadget.yaml:\n%s", y)
	}

	// What the peers read of it passes the gate for the bench's lines.
	img, err := seedimage.Inspect(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	keys := serialvault.NewKeyRing()
	if err := keys.AddFile(filepath.Join(dir, "vault-key.pub")); err != nil {
		t.Fatal(err)
	}
	a, err := serialvault.Decode(model)
	if err != nil {
		t.Fatal(err)
	}
	m, err := serialvault.AsModel(a)
	if err != nil {
		t.Fatal(err)
	}
	if v := seed.Check(img, seed.Expect{Model: m, Keys: keys}); !v.Pass || v.Identity.SeedLabel != "20260901" {
		t.Errorf("the gate refuses the bench's image: %+v", v)
	}
	if len(img.Partitions) != 2 || img.Partitions[1].Name != "bench-data" {
		t.Errorf("partitions %+v", img.Partitions)
	}

	// Opened again: the same image, not rebuilt.
	before, err := os.Stat(zst)
	if err != nil {
		t.Fatal(err)
	}
	open()
	if after, err := os.Stat(zst); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the bench rebuilt an image it had (%v)", err)
	}
	// An image without its inputs stamp (an older bench's) is rebuilt.
	if err := os.WriteFile(zst, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "image.inputs")); err != nil {
		t.Fatal(err)
	}
	if again := open(); again.Image.SourceSHA256 != b.Image.SourceSHA256 {
		t.Errorf("the rebuilt image differs: %s, was %s", again.Image.SourceSHA256, b.Image.SourceSHA256)
	}
}

func unzstd(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	d, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var out bytes.Buffer
	if _, err := out.ReadFrom(d); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
