package seedimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/flashstation/flashstation/seed"
	"github.com/flashstation/flashstation/serialvault"
)

// Inspect reads the image at path with Debian's tools alone, independently
// of package seed's reader: the partition table (sfdisk -d, GPT or MBR),
// each partition's file system and label (blkid -p), the seed (mtools on
// a UC20+ ubuntu-seed vfat, debugfs on a UC16/18 writable ext4) and the
// gadget snap (unsquashfs). It is what seed.Read should find, for tests
// that check built images with seed.Check and for differential tests of
// the reader.
func Inspect(ctx context.Context, path string) (*seed.Image, error) {
	for _, t := range []tool{toolSfdisk, {"blkid", "util-linux"}, {"mtype", "mtools"}, {"debugfs", "e2fsprogs"}, {"unsquashfs", "squashfs-tools"}} {
		if err := need(t); err != nil {
			return nil, err
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("seedimage: %w", err)
	}
	work, err := os.MkdirTemp("", "seedimage-inspect-")
	if err != nil {
		return nil, fmt.Errorf("seedimage: %w", err)
	}
	defer os.RemoveAll(work)
	in := &inspector{ctx: ctx, img: path, work: work}
	img := &seed.Image{Path: path, Size: fi.Size()}
	if err := in.partitions(img); err != nil {
		img.SeedErr = err.Error()
		return img, nil
	}
	for _, p := range img.Partitions {
		switch {
		case p.FileSystem == "vfat" && (p.Name == "ubuntu-seed" || p.Label == "ubuntu-seed"):
			img.Seed, err = in.uc20(p)
		case p.FileSystem == "ext4" && (p.Name == "writable" || p.Label == "writable"):
			img.Seed, err = in.uc16(p)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		if img.Seed != nil {
			break
		}
	}
	if img.Seed == nil {
		img.SeedErr = "no ubuntu-seed or writable partition holds a seed"
	}
	return img, nil
}

type inspector struct {
	ctx  context.Context
	img  string
	work string
	n    int
}

func (in *inspector) run(name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(in.ctx, name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("seedimage: %s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

func (in *inspector) temp(name string) string {
	in.n++
	return filepath.Join(in.work, fmt.Sprintf("%d-%s", in.n, name))
}

var (
	sfdiskLabel = regexp.MustCompile(`(?m)^label: (\S+)`)
	sfdiskPart  = regexp.MustCompile(`(?m)^\S+ : start=\s*(\d+), size=\s*(\d+), type=([0-9A-Fa-f-]+)(.*)$`)
	sfdiskName  = regexp.MustCompile(`name="([^"]*)"`)
)

func (in *inspector) partitions(img *seed.Image) error {
	dump, err := in.run("sfdisk", "-d", in.img)
	if err != nil {
		return err
	}
	m := sfdiskLabel.FindSubmatch(dump)
	if m == nil {
		return errors.New("sfdisk -d gives no label")
	}
	img.Table = map[string]string{"gpt": "gpt", "dos": "mbr"}[string(m[1])]
	for i, m := range sfdiskPart.FindAllSubmatch(dump, -1) {
		start, _ := strconv.ParseInt(string(m[1]), 10, 64)
		size, _ := strconv.ParseInt(string(m[2]), 10, 64)
		p := seed.Partition{Index: i + 1, Start: start * 512, Size: size * 512, Type: strings.ToUpper(string(m[3]))}
		if img.Table == "mbr" {
			t, err := strconv.ParseUint(string(m[3]), 16, 8)
			if err != nil {
				return fmt.Errorf("sfdisk -d: MBR type %q", m[3])
			}
			p.Type = fmt.Sprintf("%02X", t)
		}
		if n := sfdiskName.FindSubmatch(m[4]); n != nil {
			p.Name = string(n[1])
		}
		// blkid fails on a partition with no file system it knows.
		if probe, err := in.run("blkid", "-p", "-o", "export", "-O", strconv.FormatInt(p.Start, 10), in.img); err == nil {
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
		img.Partitions = append(img.Partitions, p)
	}
	return nil
}

// uc20 reads a UC20+ seed with mtools; nil when the partition has no
// systems/.
func (in *inspector) uc20(p seed.Partition) (*seed.Seed, error) {
	at := fmt.Sprintf("%s@@%d", in.img, p.Start)
	ls := func(dir string) []string {
		out, err := in.run("mdir", "-b", "-i", at, "::/"+dir)
		if err != nil {
			return nil
		}
		var names []string
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSuffix(l, "/"); l != "" {
				names = append(names, l[strings.LastIndex(l, "/")+1:])
			}
		}
		return names
	}
	systems := ls("systems")
	if len(systems) == 0 {
		return nil, nil
	}
	slices.Sort(systems)
	s := &seed.Seed{Kind: seed.KindUC20, Partition: p.Index, Systems: systems, Label: systems[len(systems)-1]}
	s.ModelFile = "systems/" + s.Label + "/model"
	var err error
	if s.ModelBytes, err = in.run("mtype", "-i", at, "::/"+s.ModelFile); err != nil {
		s.ModelErr = err.Error()
	}
	for _, f := range ls("systems/" + s.Label + "/assertions") {
		if b, err := in.run("mtype", "-i", at, "::/systems/"+s.Label+"/assertions/"+f); err == nil {
			as, _ := serialvault.DecodeStream(b)
			s.Assertions = append(s.Assertions, as...)
		}
	}
	s.Snaps = ls("snaps")
	in.finish(s, func(name, out string) error {
		_, err := in.run("mcopy", "-n", "-i", at, "::/snaps/"+name, out)
		return err
	})
	return s, nil
}

// uc16 reads a UC16/18 seed with debugfs; nil when the partition has no
// seed directory.
func (in *inspector) uc16(p seed.Partition) (*seed.Seed, error) {
	fs := in.temp("writable.ext4")
	if err := extract(in.img, fs, p.Start, p.Size); err != nil {
		return nil, err
	}
	const root = "/system-data/var/lib/snapd/seed"
	ls := func(dir string) []string {
		out, err := in.run("debugfs", "-R", "ls -p "+dir, fs)
		if err != nil {
			return nil
		}
		var names []string
		for _, l := range strings.Split(string(out), "\n") {
			// /inode/mode/uid/gid/name/size/
			f := strings.Split(l, "/")
			if len(f) >= 7 && f[5] != "." && f[5] != ".." && f[5] != "" {
				names = append(names, f[5])
			}
		}
		return names
	}
	if ls(root) == nil {
		return nil, nil
	}
	// Paths in the partition, as on UC20+: no leading slash.
	s := &seed.Seed{Kind: seed.KindUC16, Partition: p.Index, ModelFile: strings.TrimPrefix(root, "/") + "/assertions/model"}
	for _, f := range ls(root + "/assertions") {
		b, err := in.run("debugfs", "-R", "cat "+root+"/assertions/"+f, fs)
		if err != nil {
			continue
		}
		if f == "model" {
			s.ModelBytes = b
			continue
		}
		as, _ := serialvault.DecodeStream(b)
		s.Assertions = append(s.Assertions, as...)
	}
	if s.ModelBytes == nil {
		s.ModelErr = "no seed/assertions/model"
	}
	s.Snaps = ls(root + "/snaps")
	in.finish(s, func(name, out string) error {
		_, err := in.run("debugfs", "-R", "dump "+root+"/snaps/"+name+" "+out, fs)
		if _, serr := os.Stat(out); err == nil && serr != nil {
			err = fmt.Errorf("debugfs did not dump %s", name)
		}
		return err
	})
	return s, nil
}

// finish decodes the model and opens its gadget snap (copied out by get).
func (in *inspector) finish(s *seed.Seed, get func(name, out string) error) {
	slices.Sort(s.Snaps)
	if s.ModelErr != "" {
		return
	}
	a, err := serialvault.Decode(s.ModelBytes)
	if err == nil {
		s.Model, err = serialvault.AsModel(a)
	}
	if err != nil {
		s.ModelErr, s.Model = err.Error(), nil
		return
	}
	name, _, _ := strings.Cut(s.Model.Gadget, "=")
	i := slices.IndexFunc(s.Snaps, func(f string) bool { return strings.HasPrefix(f, name+"_") && strings.HasSuffix(f, ".snap") })
	if i < 0 {
		s.GadgetErr = "no " + name + "_*.snap in the seed"
		return
	}
	out := in.temp(s.Snaps[i])
	if err := get(s.Snaps[i], out); err != nil {
		s.GadgetErr = err.Error()
		return
	}
	if s.Gadget, err = in.gadget(out); err != nil {
		s.Gadget, s.GadgetErr = nil, err.Error()
		return
	}
	s.Gadget.File = s.Snaps[i]
}

// gadgetFile is meta/gadget.yaml as the gate reads it.
type gadgetFile struct {
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

// gadget reads a gadget snap with unsquashfs: its name, its hooks (the
// executable files of meta/hooks/) and its volumes.
func (in *inspector) gadget(snap string) (*seed.Gadget, error) {
	g := &seed.Gadget{Volumes: map[string]seed.Volume{}, Hooks: []string{}}
	list, err := in.run("unsquashfs", "-lls", "-d", "", snap)
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(string(list), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || !strings.HasPrefix(f[len(f)-1], "/meta/hooks/") || !strings.HasPrefix(f[0], "-") || !strings.Contains(f[0][1:4], "x") {
			continue
		}
		g.Hooks = append(g.Hooks, strings.TrimPrefix(f[len(f)-1], "/meta/hooks/"))
	}
	slices.Sort(g.Hooks)
	meta, err := in.run("unsquashfs", "-cat", snap, "meta/snap.yaml")
	if err != nil {
		return nil, err
	}
	var sy struct {
		Name string `yaml:"name"`
		Type string `yaml:"type"`
	}
	if err := yaml.Unmarshal(meta, &sy); err != nil {
		return nil, fmt.Errorf("meta/snap.yaml: %w", err)
	}
	if sy.Type != "gadget" {
		return nil, fmt.Errorf("meta/snap.yaml: type %q, not gadget", sy.Type)
	}
	g.Name = sy.Name
	raw, err := in.run("unsquashfs", "-cat", snap, "meta/gadget.yaml")
	if err != nil {
		g.YAMLErr = err.Error()
		return g, nil
	}
	var gf gadgetFile
	if err := yaml.Unmarshal(raw, &gf); err != nil {
		g.YAMLErr = err.Error()
		return g, nil
	}
	for name, v := range gf.Volumes {
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
	return g, nil
}

// extract copies size bytes of src from off into the new file dst.
func extract(src, dst string, off, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	defer f.Close()
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, off); err != nil {
		return fmt.Errorf("seedimage: reading the partition at %d: %w", off, err)
	}
	if err := os.WriteFile(dst, buf, 0o644); err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	return nil
}
