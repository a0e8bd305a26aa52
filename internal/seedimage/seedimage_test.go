package seedimage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/flashstation/flashstation/internal/seedimage"
	"github.com/flashstation/flashstation/seed"
	"github.com/flashstation/flashstation/serialvault"
)

const assertionsDir = "../../../shared/testdata/assertions/"

func needTools(t *testing.T) {
	t.Helper()
	if err := seedimage.Available(); err != nil {
		t.Skip(err)
	}
	for _, bin := range []string{"mdir", "mtype", "unsquashfs", "debugfs", "blkid"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is missing (Debian packages mtools, squashfs-tools, e2fsprogs, util-linux)", bin)
		}
	}
}

func shared(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(assertionsDir + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// peer runs a peer tool and returns its output; it fails the test when
// the tool fails.
func peer(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr)
	}
	return out
}

func inspect(t *testing.T, img string) *seed.Image {
	t.Helper()
	i, err := seedimage.Inspect(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func build(t *testing.T, s seedimage.Spec) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.img")
	if err := seedimage.Build(context.Background(), p, s); err != nil {
		t.Fatal(err)
	}
	return p
}

func digest(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func acmeSpec(t *testing.T) seedimage.Spec {
	return seedimage.Spec{
		Model:      shared(t, "10-model-acme-uc22.txt"),
		Assertions: [][]byte{shared(t, "11-account-generic.real.txt"), shared(t, "12-account-key-generic-models.real.txt")},
		Gadget:     &seedimage.Gadget{Name: "acme-gadget", Hooks: []string{"configure", "prepare-device"}},
		Snaps:      []string{"pi-kernel", "core22", "snapd"},
		Extra:      []seedimage.Region{{Name: "data/blob", File: true, Size: 3 << 20}, {Name: "bench-data", Size: 2 << 20}},
	}
}

// TestUC20 builds a UC20+ GPT image of the acme model and reads it back
// with the peers: the partitions (sfdisk, sgdisk, blkid), the seed
// (mtools), the gadget (unsquashfs); what they find passes the gate.
func TestUC20(t *testing.T) {
	needTools(t)
	s := acmeSpec(t)
	img := build(t, s)
	if fi, err := os.Stat(img); err != nil || fi.Size() != seedimage.DefaultSize {
		t.Fatalf("image: %v %v", fi, err)
	}
	if out := peer(t, "sgdisk", "--verify", img); !bytes.Contains(out, []byte("No problems found")) {
		t.Errorf("sgdisk --verify:\n%s", out)
	}
	got := inspect(t, img)
	table, parts := got.Table, got.Partitions
	if table != "gpt" || len(parts) != 2 || got.Seed == nil {
		t.Fatalf("table %s, partitions %+v, seed %v", table, parts, got.SeedErr)
	}
	for _, p := range parts {
		// sgdisk, the other peer, agrees with sfdisk on names and types.
		info := string(peer(t, "sgdisk", "-i", strconv.Itoa(p.Index), img))
		if !strings.Contains(info, "Partition name: '"+p.Name+"'") || !strings.Contains(info, p.Type) {
			t.Errorf("sgdisk -i %d disagrees with sfdisk (%+v):\n%s", p.Index, p, info)
		}
	}
	sp := parts[0]
	if sp.Name != "ubuntu-seed" || sp.Label != "ubuntu-seed" || sp.FileSystem != "vfat" || sp.Start != 1<<20 || sp.Type != seedimage.TypeESP {
		t.Errorf("seed partition %+v", sp)
	}
	if raw := parts[1]; raw.Name != "bench-data" || raw.FileSystem != "" || raw.Size != 2<<20 || raw.Start < sp.Start+sp.Size {
		t.Errorf("raw partition %+v", raw)
	}
	sd := got.Seed
	if sd.Label != seedimage.DefaultLabel || sd.ModelFile != "systems/"+seedimage.DefaultLabel+"/model" || len(sd.Assertions) != 2 {
		t.Errorf("seed %+v", sd)
	}
	if !bytes.Equal(sd.ModelBytes, s.Model) {
		t.Error("systems/<label>/model is not the model given")
	}
	etc := peer(t, "mtype", "-i", fmt.Sprintf("%s@@%d", img, sp.Start), "::/systems/"+seedimage.DefaultLabel+"/assertions/model-etc")
	as, err := serialvault.DecodeStream(etc)
	if err != nil || len(as) != 2 || as[0].Type() != "account" || as[1].Type() != "account-key" {
		t.Errorf("model-etc: %d assertions, %v", len(as), err)
	}
	if !bytes.Contains(etc, []byte("\n\ntype: account-key\n")) {
		t.Errorf("model-etc does not separate its assertions by a blank line:\n%s", etc)
	}
	want := []string{"acme-gadget_1.snap", "core22_1.snap", "pi-kernel_1.snap", "snapd_1.snap"}
	if got := slices.Sorted(slices.Values(sd.Snaps)); !slices.Equal(got, want) {
		t.Errorf("snaps %v, want %v", got, want)
	}
	blob := peer(t, "mtype", "-i", fmt.Sprintf("%s@@%d", img, sp.Start), "::/data/blob")
	if len(blob) != 3<<20 || bytes.Count(blob, []byte{0}) > len(blob)/128 {
		t.Errorf("data/blob: %d bytes, %d zeros", len(blob), bytes.Count(blob, []byte{0}))
	}
	if sd.Gadget == nil || sd.Gadget.Name != "acme-gadget" || !slices.Equal(sd.Gadget.Hooks, []string{"configure", "prepare-device"}) {
		t.Fatalf("gadget %+v", sd.Gadget)
	}
	ring := serialvault.NewKeyRing()
	if err := ring.AddFile(assertionsDir + "acme-brand-key.pub"); err != nil {
		t.Fatal(err)
	}
	v := seed.Check(got, seed.Expect{Model: sd.Model, Keys: ring})
	if !v.Pass {
		t.Errorf("the gate refuses what the peers read: %+v", v.Problems)
	}

	// The same spec gives the same bytes.
	if digest(t, img) != digest(t, build(t, s)) {
		t.Error("two builds of one spec differ")
	}
}

// TestUC20Refused: a gadget without prepare-device, or with a
// gadget.yaml that does not describe the image, is refused by the gate
// reading what the peers read.
func TestUC20Refused(t *testing.T) {
	needTools(t)
	for _, tc := range []struct {
		name   string
		gadget seedimage.Gadget
		cause  string
	}{
		{"no hooks", seedimage.Gadget{Name: "acme-gadget", Hooks: []string{}}, seed.CauseGadgetHook},
		{"other offset", seedimage.Gadget{Name: "acme-gadget", GadgetYAML: []byte(`volumes:
  pc:
    schema: gpt
    structure:
      - {name: ubuntu-seed, role: system-seed, type: ` + seedimage.TypeESP + `, filesystem: vfat, offset: 2097152, size: 8388608}
`)}, seed.CauseGadgetVolumes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := acmeSpec(t)
			s.Extra = nil
			s.Gadget = &tc.gadget
			img := build(t, s)
			got := inspect(t, img)
			if got.Seed == nil || got.Seed.Model == nil {
				t.Fatalf("no seed or model: %+v", got)
			}
			ring := serialvault.NewKeyRing()
			if err := ring.AddFile(assertionsDir + "acme-brand-key.pub"); err != nil {
				t.Fatal(err)
			}
			v := seed.Check(got, seed.Expect{Model: got.Seed.Model, Keys: ring})
			if v.Pass || v.Cause != tc.cause {
				t.Errorf("verdict %+v, want cause %s", v, tc.cause)
			}
		})
	}
}

// TestUC16MBR builds a UC18 MBR image (system-boot vfat, writable ext4)
// and reads its seed with debugfs.
func TestUC16MBR(t *testing.T) {
	needTools(t)
	model := shared(t, "09-model-uc18-pi2.real.txt")
	s := seedimage.Spec{Kind: seedimage.KindUC16, Table: "mbr", Model: model,
		Assertions: [][]byte{shared(t, "11-account-generic.real.txt")},
		Gadget:     &seedimage.Gadget{Name: "pi"}, Snaps: []string{"pi-kernel", "core18", "snapd"},
		Extra: []seedimage.Region{{Name: "/data/blob", File: true, Size: 1 << 20}}}
	img := build(t, s)
	got := inspect(t, img)
	table, parts := got.Table, got.Partitions
	if table != "mbr" || len(parts) != 2 {
		t.Fatalf("table %s, partitions %+v", table, parts)
	}
	if p := parts[0]; p.Type != "0C" || p.FileSystem != "vfat" || p.Label != "system-boot" || p.Start != 1<<20 {
		t.Errorf("system-boot %+v", p)
	}
	w := parts[1]
	if w.Type != "83" || w.FileSystem != "ext4" || w.Label != "writable" {
		t.Errorf("writable %+v", w)
	}
	// debugfs reads the ext4 from a copy of the partition.
	fs := filepath.Join(t.TempDir(), "writable.ext4")
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fs, data[w.Start:w.Start+w.Size], 0o644); err != nil {
		t.Fatal(err)
	}
	const root = "/system-data/var/lib/snapd/seed"
	cat := func(p string) []byte { return peer(t, "debugfs", "-R", "cat "+p, fs) }
	if got := cat(root + "/assertions/model"); !bytes.Equal(got, model) {
		t.Errorf("seed/assertions/model:\n%s", got)
	}
	if got := cat(root + "/assertions/01.assert"); !bytes.Equal(got, s.Assertions[0]) {
		t.Errorf("seed/assertions/01.assert:\n%s", got)
	}
	var sy struct {
		Snaps []struct{ Name, File string }
	}
	if err := yaml.Unmarshal(cat(root+"/seed.yaml"), &sy); err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, e := range sy.Snaps {
		listed = append(listed, e.Name+" "+e.File)
	}
	if want := []string{"pi-kernel pi-kernel_1.snap", "core18 core18_1.snap", "snapd snapd_1.snap", "pi pi_1.snap"}; !slices.Equal(listed, want) {
		t.Errorf("seed.yaml lists %q, want %q", listed, want)
	}
	ls := string(peer(t, "debugfs", "-R", "ls -l "+root+"/snaps", fs))
	for _, f := range []string{"pi_1.snap", "core18_1.snap", "pi-kernel_1.snap", "snapd_1.snap"} {
		if !strings.Contains(ls, f) {
			t.Errorf("seed/snaps lacks %s:\n%s", f, ls)
		}
	}
	// Every inode is dated at the epoch, the change times too (which
	// mkfs.ext4 -d takes from the clock), so builds in different seconds
	// agree.
	for _, p := range []string{"/", "/data", root, root + "/seed.yaml", root + "/snaps/pi_1.snap"} {
		stat := string(peer(t, "debugfs", "-R", "stat "+p, fs))
		if n := strings.Count(stat, fmt.Sprintf("0x%08x:", seedimage.Epoch)); n < 4 {
			t.Errorf("%s: %d of its times are the epoch:\n%s", p, n, stat)
		}
	}
	if blob := cat("/data/blob"); len(blob) != 1<<20 {
		t.Errorf("/data/blob is %d bytes", len(blob))
	}
	sd := got.Seed
	if sd == nil || sd.Kind != seed.KindUC16 || sd.Partition != 2 || sd.ModelFile != "system-data/var/lib/snapd/seed/assertions/model" ||
		!bytes.Equal(sd.ModelBytes, model) || len(sd.Assertions) != 1 {
		t.Fatalf("seed %+v (%s)", sd, got.SeedErr)
	}
	if g := sd.Gadget; g == nil || g.Name != "pi" || g.File != "pi_1.snap" || !slices.Equal(g.Hooks, []string{"prepare-device"}) {
		t.Errorf("gadget %+v (%s)", g, sd.GadgetErr)
	}
	v := seed.Check(got, seed.Expect{Model: sd.Model})
	for _, p := range v.Problems {
		if p.Cause != seed.CauseSignature {
			t.Errorf("problem %+v", p)
		}
	}
	if digest(t, img) != digest(t, build(t, s)) {
		t.Error("two builds of one spec differ")
	}
}

// TestNoSeed: partitions and a file system, but no seed in it.
func TestNoSeed(t *testing.T) {
	needTools(t)
	s := acmeSpec(t)
	s.NoSeed = true
	img := build(t, s)
	got := inspect(t, img)
	parts := got.Partitions
	if len(parts) != 2 || parts[0].Label != "ubuntu-seed" || got.Seed != nil {
		t.Fatalf("partitions %+v, seed %+v", parts, got.Seed)
	}
	if v := seed.Check(got, seed.Expect{}); v.Cause != seed.CauseNoSeed {
		t.Errorf("verdict %+v, want %s", v, seed.CauseNoSeed)
	}
	root := string(peer(t, "mdir", "-b", "-i", fmt.Sprintf("%s@@%d", img, parts[0].Start), "::/"))
	if strings.Contains(root, "systems") || strings.Contains(root, "snaps") || !strings.Contains(root, "data") {
		t.Errorf("the seed partition of an image with no seed holds:\n%s", root)
	}
}

// TestTooSmall: partitions that do not fit are an error.
func TestTooSmall(t *testing.T) {
	needTools(t)
	s := acmeSpec(t)
	s.Size = 8 << 20
	err := seedimage.Build(context.Background(), filepath.Join(t.TempDir(), "x.img"), s)
	if err == nil || !strings.Contains(err.Error(), "past an image") {
		t.Errorf("err %v", err)
	}
}

// TestUC20MBR: a UC20+ image on an MBR (as Raspberry Pi images are):
// the seed partition is type 0C, found by its label, and what the peers
// read passes the gate.
func TestUC20MBR(t *testing.T) {
	needTools(t)
	s := acmeSpec(t)
	s.Table = "mbr"
	got := inspect(t, build(t, s))
	if got.Table != "mbr" || len(got.Partitions) != 2 || got.Seed == nil {
		t.Fatalf("%+v", got)
	}
	if p := got.Partitions[0]; p.Type != "0C" || p.Label != "ubuntu-seed" || p.Name != "" {
		t.Errorf("seed partition %+v", p)
	}
	if p := got.Partitions[1]; p.Type != "DA" || p.FileSystem != "" {
		t.Errorf("raw partition %+v", p)
	}
	ring := serialvault.NewKeyRing()
	if err := ring.AddFile(assertionsDir + "acme-brand-key.pub"); err != nil {
		t.Fatal(err)
	}
	if v := seed.Check(got, seed.Expect{Model: got.Seed.Model, Keys: ring}); !v.Pass {
		t.Errorf("the gate refuses what the peers read: %+v", v.Problems)
	}
}

// TestRebuiltTableSameBytes: a second image of one layout takes the GPT
// sgdisk wrote for the first (sgdisk sleeps a second after each write):
// the two images are the same bytes, and sgdisk verifies the second.
func TestRebuiltTableSameBytes(t *testing.T) {
	needTools(t)
	model, err := os.ReadFile(assertionsDir + "10-model-acme-uc22.txt")
	if err != nil {
		t.Fatal(err)
	}
	spec := seedimage.Spec{Model: model, Gadget: &seedimage.Gadget{Name: "acme-gadget"}, Size: 24 << 20, Label: "20261202"}
	var imgs [2][]byte
	for i := range imgs {
		path := filepath.Join(t.TempDir(), "img")
		if err := seedimage.Build(context.Background(), path, spec); err != nil {
			t.Fatal(err)
		}
		if imgs[i], err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if out, err := exec.Command("sgdisk", "--verify", path).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
				t.Errorf("sgdisk --verify of the second image: %v\n%s", err, out)
			}
		}
	}
	if !bytes.Equal(imgs[0], imgs[1]) {
		t.Error("the second image differs from the first")
	}
}
