package seedimage_test

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

func build(t *testing.T, s seedimage.Spec) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.img")
	if err := seedimage.Build(context.Background(), p, s); err != nil {
		t.Fatal(err)
	}
	return p
}

// partitions reads the image's partition table with sgdisk or sfdisk and
// its file systems with blkid, as seed.Read would report them.
func partitions(t *testing.T, img string) (string, []seed.Partition) {
	t.Helper()
	dump := string(peer(t, "sfdisk", "-d", img))
	table := map[string]string{"gpt": "gpt", "dos": "mbr"}[regexp.MustCompile(`(?m)^label: (\S+)`).FindStringSubmatch(dump)[1]]
	var parts []seed.Partition
	line := regexp.MustCompile(`(?m)^\S+ : start=\s*(\d+), size=\s*(\d+), type=([0-9A-Fa-f-]+)(.*)$`)
	for i, m := range line.FindAllStringSubmatch(dump, -1) {
		start, _ := strconv.ParseInt(m[1], 10, 64)
		size, _ := strconv.ParseInt(m[2], 10, 64)
		p := seed.Partition{Index: i + 1, Start: start * 512, Size: size * 512, Type: strings.ToUpper(m[3])}
		if table == "mbr" {
			p.Type = fmt.Sprintf("%02X", must(strconv.ParseUint(m[3], 16, 8)))
		}
		if n := regexp.MustCompile(`name="([^"]*)"`).FindStringSubmatch(m[4]); n != nil {
			p.Name = n[1]
		}
		if table == "gpt" {
			// sgdisk, the other peer, agrees on name and type.
			info := string(peer(t, "sgdisk", "-i", strconv.Itoa(i+1), img))
			if !strings.Contains(info, "Partition name: '"+p.Name+"'") || !strings.Contains(info, p.Type) {
				t.Errorf("sgdisk -i %d disagrees with sfdisk (%+v):\n%s", i+1, p, info)
			}
		}
		probe, err := exec.Command("blkid", "-p", "-o", "export", "-O", strconv.FormatInt(p.Start, 10), img).Output()
		if err == nil {
			for _, kv := range strings.Split(string(probe), "\n") {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "TYPE":
					p.FileSystem = v
				case "LABEL":
					p.Label = v
				}
			}
		}
		parts = append(parts, p)
	}
	return table, parts
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// gadgetYAML is meta/gadget.yaml as the gate reads it.
type gadgetYAML struct {
	Volumes map[string]struct {
		Schema     string `yaml:"schema"`
		Bootloader string `yaml:"bootloader"`
		Structure  []struct {
			Name   string `yaml:"name"`
			Role   string `yaml:"role"`
			Type   string `yaml:"type"`
			FS     string `yaml:"filesystem"`
			Label  string `yaml:"filesystem-label"`
			Offset *int64 `yaml:"offset"`
			Size   int64  `yaml:"size"`
		} `yaml:"structure"`
	} `yaml:"volumes"`
}

// gadget reads the gadget snap (copied out of the image by the caller)
// with unsquashfs: its name, hooks and volumes.
func gadget(t *testing.T, snap string) *seed.Gadget {
	t.Helper()
	g := &seed.Gadget{File: filepath.Base(snap), Volumes: map[string]seed.Volume{}}
	list := string(peer(t, "unsquashfs", "-lls", "-d", "", snap))
	for _, l := range strings.Split(list, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || !strings.Contains(f[len(f)-1], "meta/hooks/") {
			continue
		}
		if !strings.HasPrefix(f[0], "-rwxr-xr-x") || f[1] != "root/root" {
			t.Errorf("hook %s is %s %s, want -rwxr-xr-x root/root", f[len(f)-1], f[0], f[1])
		}
		g.Hooks = append(g.Hooks, strings.TrimPrefix(f[len(f)-1], "/meta/hooks/"))
	}
	slices.Sort(g.Hooks)
	meta := struct {
		Name string `yaml:"name"`
		Type string `yaml:"type"`
	}{}
	if err := yaml.Unmarshal(peer(t, "unsquashfs", "-cat", snap, "meta/snap.yaml"), &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Type != "gadget" {
		t.Errorf("meta/snap.yaml type %q", meta.Type)
	}
	g.Name = meta.Name
	var gy gadgetYAML
	if err := yaml.Unmarshal(peer(t, "unsquashfs", "-cat", snap, "meta/gadget.yaml"), &gy); err != nil {
		g.YAMLErr = err.Error()
		return g
	}
	for name, v := range gy.Volumes {
		vol := seed.Volume{Schema: v.Schema, Bootloader: v.Bootloader}
		for _, s := range v.Structure {
			st := seed.Structure{Name: s.Name, Role: s.Role, Type: s.Type, Filesystem: s.FS, Label: s.Label, Offset: -1, Size: s.Size}
			if s.Offset != nil {
				st.Offset = *s.Offset
			}
			vol.Structure = append(vol.Structure, st)
		}
		g.Volumes[name] = vol
	}
	return g
}

func decodeModel(t *testing.T, b []byte) *serialvault.Model {
	t.Helper()
	a, err := serialvault.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	m, err := serialvault.AsModel(a)
	if err != nil {
		t.Fatal(err)
	}
	return m
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

// uc20Seed reads a UC20+ image's seed with mtools and unsquashfs.
func uc20Seed(t *testing.T, img string, p seed.Partition, label string) *seed.Seed {
	t.Helper()
	at := fmt.Sprintf("%s@@%d", img, p.Start)
	s := &seed.Seed{Kind: seed.KindUC20, Partition: p.Index, Label: label, ModelFile: "systems/" + label + "/model"}
	s.ModelBytes = peer(t, "mtype", "-i", at, "::/"+s.ModelFile)
	s.Model = decodeModel(t, s.ModelBytes)
	for _, l := range strings.Split(string(peer(t, "mdir", "-b", "-i", at, "::/snaps")), "\n") {
		if l != "" {
			s.Snaps = append(s.Snaps, strings.TrimPrefix(l, "::/snaps/"))
		}
	}
	gadgetFile := s.Model.Gadget + "_1.snap"
	if slices.Contains(s.Snaps, gadgetFile) {
		out := filepath.Join(t.TempDir(), gadgetFile)
		peer(t, "mcopy", "-n", "-i", at, "::/snaps/"+gadgetFile, out)
		s.Gadget = gadget(t, out)
	}
	return s
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
	table, parts := partitions(t, img)
	if table != "gpt" || len(parts) != 2 {
		t.Fatalf("table %s, partitions %+v", table, parts)
	}
	sp := parts[0]
	if sp.Name != "ubuntu-seed" || sp.Label != "ubuntu-seed" || sp.FileSystem != "vfat" || sp.Start != 1<<20 || sp.Type != seedimage.TypeESP {
		t.Errorf("seed partition %+v", sp)
	}
	if raw := parts[1]; raw.Name != "bench-data" || raw.FileSystem != "" || raw.Size != 2<<20 || raw.Start < sp.Start+sp.Size {
		t.Errorf("raw partition %+v", raw)
	}
	sd := uc20Seed(t, img, sp, seedimage.DefaultLabel)
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
	v := seed.Check(&seed.Image{Path: img, Size: seedimage.DefaultSize, Table: table, Partitions: parts, Seed: sd},
		seed.Expect{Model: sd.Model, Keys: ring})
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
			table, parts := partitions(t, img)
			sd := uc20Seed(t, img, parts[0], seedimage.DefaultLabel)
			ring := serialvault.NewKeyRing()
			if err := ring.AddFile(assertionsDir + "acme-brand-key.pub"); err != nil {
				t.Fatal(err)
			}
			v := seed.Check(&seed.Image{Table: table, Partitions: parts, Seed: sd}, seed.Expect{Model: sd.Model, Keys: ring})
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
	table, parts := partitions(t, img)
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
	if blob := cat("/data/blob"); len(blob) != 1<<20 {
		t.Errorf("/data/blob is %d bytes", len(blob))
	}
	snap := filepath.Join(t.TempDir(), "pi_1.snap")
	peer(t, "debugfs", "-R", "dump "+root+"/snaps/pi_1.snap "+snap, fs)
	g := gadget(t, snap)
	if g.Name != "pi" || !slices.Equal(g.Hooks, []string{"prepare-device"}) {
		t.Errorf("gadget %+v", g)
	}
	sd := &seed.Seed{Kind: seed.KindUC16, Partition: 2, ModelFile: root + "/assertions/model", ModelBytes: model,
		Model: decodeModel(t, model), Gadget: g}
	sd.Model.Gadget = "pi" // the real model names its gadget "pi=18-pi2" (with its track)
	v := seed.Check(&seed.Image{Table: table, Partitions: parts, Seed: sd}, seed.Expect{Model: sd.Model})
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
	_, parts := partitions(t, img)
	if len(parts) != 2 || parts[0].Label != "ubuntu-seed" {
		t.Fatalf("partitions %+v", parts)
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
