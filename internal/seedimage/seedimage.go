// Package seedimage builds real Ubuntu Core-shaped disk images for tests
// and for the simulated bench, with Debian's tools as independent peers
// of the station's seed reader: sgdisk (GPT) or sfdisk (MBR) for the
// partition table, mkfs.vfat and mtools (mmd, mcopy) for vfat file
// systems, mkfs.ext4 -d for the UC16/18 writable partition, and mksquashfs
// for the snaps, the gadget included. Nothing is mounted and nothing needs
// root.
//
// A UC20+ image (Kind "uc20") has an ubuntu-seed vfat partition at 1 MiB
// holding systems/<label>/model, systems/<label>/assertions/model-etc and
// snaps/*.snap. A UC16/18 image (Kind "uc16") has a system-boot vfat and a
// writable ext4 holding system-data/var/lib/snapd/seed/ (assertions/,
// snaps/, seed.yaml). The gadget snap carries meta/snap.yaml,
// meta/hooks/ and a meta/gadget.yaml generated from the partitions the
// image really has, unless the Spec gives its own.
//
// The same Spec gives the same bytes: fixed disk and partition GUIDs,
// volume ids and UUIDs, SOURCE_DATE_EPOCH for mtools and mke2fs, and
// mksquashfs with fixed times and owners.
package seedimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Kinds of image.
const (
	KindUC20 = "uc20" // ubuntu-seed vfat, systems/<label>/
	KindUC16 = "uc16" // writable ext4, system-data/var/lib/snapd/seed/
)

// Partition type identifiers.
const (
	TypeESP       = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" // EFI system partition (GPT)
	TypeLinux     = "0FC63DAF-8483-4772-8E79-3D69D8477DE4" // Linux file system data (GPT)
	TypeMBRFAT32  = "0C"                                   // FAT32 with LBA (MBR)
	TypeMBRLinux  = "83"                                   // Linux (MBR)
	TypeMBRNonFS  = "DA"                                   // non-file-system data (MBR)
	DefaultLabel  = "20260101"
	DefaultSize   = 32 << 20
	DefaultVolume = "pc"
)

// Epoch is the time of every file and file system record the tools
// write (2026-01-01T00:00:00Z).
const Epoch = 1767225600

const (
	mib       = 1 << 20
	firstPart = mib // every image's first partition starts at 1 MiB
	minVFAT   = 8 * mib
	minExt4   = 8 * mib
)

// Spec describes an image.
type Spec struct {
	// Kind is KindUC20 (default) or KindUC16.
	Kind string
	// Table is "gpt" (default) or "mbr".
	Table string
	// Label is the UC20+ recovery system's label (default DefaultLabel).
	Label string
	// Model is the model assertion as stored: systems/<label>/model on
	// UC20+, seed/assertions/model on UC16/18.
	Model []byte
	// Assertions are the other assertions (account, account-key...): on
	// UC20+ one file, systems/<label>/assertions/model-etc, with a blank
	// line between them; on UC16/18 seed/assertions/<n>.assert each.
	Assertions [][]byte
	// Gadget is the gadget snap; nil: the seed has none.
	Gadget *Gadget
	// Snaps are the other snaps of the seed, by name (kernel, base,
	// snapd...): small squashfs files snaps/<name>_1.snap.
	Snaps []string
	// NoSeed makes the partitions and file systems but puts no seed in
	// them (no model, no snaps, no seed.yaml).
	NoSeed bool
	// Extra are regions of random bytes: files in the seed's file system
	// or raw partitions, so that an image has mapped data to flash.
	Extra []Region
	// Size is the whole image's size (default DefaultSize); Build fails
	// when the partitions do not fit.
	Size int64
}

// Gadget is the gadget snap of a seed.
type Gadget struct {
	// Name is the snap's name (meta/snap.yaml name, type gadget); its
	// file is snaps/<Name>_1.snap.
	Name string
	// Hooks are meta/hooks/ entries; nil gives the default
	// (prepare-device), an empty non-nil slice none.
	Hooks []string
	// GadgetYAML is meta/gadget.yaml; nil: generated from the image's
	// partitions, so that it agrees with them. GadgetSnap needs it set.
	GadgetYAML []byte
}

// Region is a region of random bytes (the same bytes for the same Name
// and Size).
type Region struct {
	// Name is the file's path in the seed partition (File set) or the
	// raw partition's GPT name and gadget.yaml structure name.
	Name string
	// File puts the bytes in a file of the seed's file system (the
	// ubuntu-seed vfat, or the writable ext4 on UC16/18); otherwise they
	// fill a raw partition of their own (Size rounded up to 1 MiB).
	File bool
	Size int64
}

// Part is one partition of a built image, as its layout was planned.
type Part struct {
	Index      int    // 1-based
	Name       string // GPT name; the file system label on MBR
	Role       string // gadget.yaml role (system-seed, system-boot, system-data) or ""
	Type       string // GPT type GUID or MBR type (two hex digits)
	Filesystem string // vfat, ext4 or "" (raw)
	Label      string // file system label
	Offset     int64
	Size       int64
}

// tool is a program Build runs and the Debian package that has it.
type tool struct{ bin, pkg string }

var (
	toolSgdisk     = tool{"sgdisk", "gdisk"}
	toolSfdisk     = tool{"sfdisk", "fdisk"}
	toolMkfsVFAT   = tool{"mkfs.vfat", "dosfstools"}
	toolMcopy      = tool{"mcopy", "mtools"}
	toolMmd        = tool{"mmd", "mtools"}
	toolMkfsExt4   = tool{"mkfs.ext4", "e2fsprogs"}
	toolDebugfs    = tool{"debugfs", "e2fsprogs"}
	toolMksquashfs = tool{"mksquashfs", "squashfs-tools"}
	allTools       = []tool{toolSgdisk, toolSfdisk, toolMkfsVFAT, toolMcopy, toolMmd, toolMkfsExt4, toolDebugfs, toolMksquashfs}
)

// Available is nil when every tool Build may run is installed; otherwise
// its error names the missing programs and their Debian packages.
func Available() error { return need(allTools...) }

func need(tools ...tool) error {
	var bins, pkgs []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.bin); err != nil {
			bins = append(bins, t.bin)
			if !slices.Contains(pkgs, t.pkg) {
				pkgs = append(pkgs, t.pkg)
			}
		}
	}
	if len(bins) == 0 {
		return nil
	}
	return fmt.Errorf("seedimage: %s missing: install the Debian packages %s (scripts/deps.sh installs them)",
		strings.Join(bins, ", "), strings.Join(pkgs, " "))
}

// Build writes the image s describes at path (replacing what is there).
func Build(ctx context.Context, path string, s Spec) error {
	s = s.withDefaults()
	if err := s.validate(); err != nil {
		return err
	}
	tools := []tool{toolMkfsVFAT, toolMcopy, toolMmd, toolSgdisk}
	if s.Table == "mbr" {
		tools[3] = toolSfdisk
	}
	if s.Kind == KindUC16 {
		tools = append(tools, toolMkfsExt4, toolDebugfs)
	}
	if !s.NoSeed && (s.Gadget != nil || len(s.Snaps) > 0) {
		tools = append(tools, toolMksquashfs)
	}
	if err := need(tools...); err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(path), ".seedimage-")
	if err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	defer os.RemoveAll(work)
	b := &builder{ctx: ctx, work: work, s: s, env: append(os.Environ(),
		fmt.Sprintf("SOURCE_DATE_EPOCH=%d", Epoch), "E2FSPROGS_FAKE_TIME="+fmt.Sprint(Epoch), "MTOOLS_SKIP_CHECK=1", "TZ=UTC", "LC_ALL=C")}
	return b.build(path)
}

func (s Spec) withDefaults() Spec {
	if s.Kind == "" {
		s.Kind = KindUC20
	}
	if s.Table == "" {
		s.Table = "gpt"
	}
	if s.Label == "" {
		s.Label = DefaultLabel
	}
	if s.Size == 0 {
		s.Size = DefaultSize
	}
	if s.Gadget != nil && s.Gadget.Hooks == nil {
		g := *s.Gadget
		g.Hooks = []string{"prepare-device"}
		s.Gadget = &g
	}
	return s
}

func (s Spec) validate() error {
	if s.Kind != KindUC20 && s.Kind != KindUC16 {
		return fmt.Errorf("seedimage: kind %q is neither %s nor %s", s.Kind, KindUC20, KindUC16)
	}
	if s.Table != "gpt" && s.Table != "mbr" {
		return fmt.Errorf("seedimage: table %q is neither gpt nor mbr", s.Table)
	}
	if strings.ContainsAny(s.Label, "/ ") {
		return fmt.Errorf("seedimage: recovery system label %q", s.Label)
	}
	names := map[string]bool{}
	check := func(n string) error {
		if n == "" || strings.ContainsAny(n, "/_ ") || names[n] {
			return fmt.Errorf("seedimage: snap name %q is empty, repeated or not a snap name", n)
		}
		names[n] = true
		return nil
	}
	if s.Gadget != nil {
		if err := check(s.Gadget.Name); err != nil {
			return err
		}
	}
	for _, n := range s.Snaps {
		if err := check(n); err != nil {
			return err
		}
	}
	for _, r := range s.Extra {
		if r.Name == "" || r.Size <= 0 || (!r.File && strings.Contains(r.Name, "/")) {
			return fmt.Errorf("seedimage: extra region %q of %d bytes", r.Name, r.Size)
		}
	}
	return nil
}

type builder struct {
	ctx  context.Context
	work string
	s    Spec
	env  []string
	n    int // temporary files made
}

func (b *builder) build(out string) error {
	s := b.s
	// The seed's files, path in its file system -> bytes.
	files, err := b.seedFiles()
	if err != nil {
		return err
	}
	seedBytes := int64(0)
	for _, f := range files {
		seedBytes += int64(len(f.data)) + 64<<10
	}
	parts := b.plan(seedBytes)
	if end := parts[len(parts)-1].Offset + parts[len(parts)-1].Size; end+mib > s.Size {
		return fmt.Errorf("seedimage: the partitions end at byte %d, past an image of %d bytes (with 1 MiB for the backup GPT)", end, s.Size)
	}
	if s.Gadget != nil && !s.NoSeed {
		gy := s.Gadget.GadgetYAML
		if gy == nil {
			gy = GadgetYAML(s.Kind, s.Table, "", parts)
		}
		g := *s.Gadget
		g.GadgetYAML = gy
		snap := b.temp()
		if err := GadgetSnap(b.ctx, snap, g); err != nil {
			return err
		}
		data, err := os.ReadFile(snap)
		if err != nil {
			return fmt.Errorf("seedimage: %w", err)
		}
		files = append(files, file{b.snapDir() + "/" + g.Name + "_1.snap", data})
	}
	disk := filepath.Join(b.work, "disk.img")
	if err := createSized(disk, s.Size); err != nil {
		return err
	}
	if err := b.table(disk, parts); err != nil {
		return err
	}
	for _, p := range parts {
		var fsFile string
		switch {
		case p.Filesystem == "vfat":
			var content []file
			if p.Role == "system-seed" {
				content = files
			}
			if fsFile, err = b.vfat(p, content); err != nil {
				return err
			}
		case p.Filesystem == "ext4":
			if fsFile, err = b.ext4(p, files); err != nil {
				return err
			}
		default:
			fsFile = b.temp()
			if err := os.WriteFile(fsFile, randomBytes(p.Name, p.Size), 0o644); err != nil {
				return fmt.Errorf("seedimage: %w", err)
			}
		}
		if err := copyInto(disk, p.Offset, fsFile, p.Size); err != nil {
			return err
		}
	}
	if err := os.Rename(disk, out); err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	return nil
}

// file is one file of the seed's file system.
type file struct {
	path string // from the file system's root, no leading slash
	data []byte
}

func (b *builder) seedRoot() string {
	if b.s.Kind == KindUC16 {
		return "system-data/var/lib/snapd/seed"
	}
	return ""
}

func (b *builder) snapDir() string {
	if r := b.seedRoot(); r != "" {
		return r + "/snaps"
	}
	return "snaps"
}

// seedFiles are the seed's files but the gadget snap (made once the
// layout is known), then the extra files.
func (b *builder) seedFiles() ([]file, error) {
	s := b.s
	var files []file
	// The extra files first: their data is then the first of the file
	// system's, right after its tables.
	for _, r := range s.Extra {
		if r.File {
			files = append(files, file{strings.TrimPrefix(r.Name, "/"), randomBytes(r.Name, r.Size)})
		}
	}
	if s.NoSeed {
		return files, nil
	}
	root := b.seedRoot()
	if s.Kind == KindUC20 {
		sys := "systems/" + s.Label
		files = append(files, file{sys + "/model", s.Model})
		if len(s.Assertions) > 0 {
			var etc []byte
			for i, a := range s.Assertions {
				if i > 0 {
					etc = append(etc, '\n')
				}
				etc = append(etc, bytes.TrimRight(a, "\n")...)
				etc = append(etc, '\n')
			}
			files = append(files, file{sys + "/assertions/model-etc", etc})
		}
	} else {
		files = append(files, file{root + "/assertions/model", s.Model})
		for i, a := range s.Assertions {
			files = append(files, file{fmt.Sprintf("%s/assertions/%02d.assert", root, i+1), a})
		}
		var y strings.Builder
		y.WriteString("snaps:\n")
		names := slices.Clone(s.Snaps)
		if s.Gadget != nil {
			names = append(names, s.Gadget.Name)
		}
		for _, n := range names {
			fmt.Fprintf(&y, "  - name: %s\n    channel: stable\n    file: %s_1.snap\n", n, n)
		}
		files = append(files, file{root + "/seed.yaml", []byte(y.String())})
	}
	for _, n := range s.Snaps {
		p := b.temp()
		if err := b.squash(p, map[string][]byte{"meta/snap.yaml": []byte(snapYAML(n, snapType(n)))}, nil); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("seedimage: %w", err)
		}
		files = append(files, file{b.snapDir() + "/" + n + "_1.snap", data})
	}
	return files, nil
}

// snapType guesses a seed snap's type from its name, as the models of
// the tests name them.
func snapType(name string) string {
	switch {
	case name == "snapd":
		return "snapd"
	case name == "core" || strings.HasPrefix(name, "core1") || strings.HasPrefix(name, "core2"):
		if name == "core" {
			return "os"
		}
		return "base"
	case strings.Contains(name, "kernel"):
		return "kernel"
	}
	return "app"
}

func snapYAML(name, typ string) string {
	return fmt.Sprintf("name: %s\nversion: \"1\"\nsummary: %s, made by flashstation's seedimage for tests\ntype: %s\n", name, name, typ)
}

// plan lays out the partitions: the seed's partition (or system-boot and
// writable) and the raw extra partitions, from 1 MiB on, 1 MiB aligned.
func (b *builder) plan(seedBytes int64) []Part {
	s := b.s
	var parts []Part
	off := int64(firstPart)
	add := func(p Part) {
		p.Index = len(parts) + 1
		p.Offset = off
		parts = append(parts, p)
		off += p.Size
	}
	gpt := s.Table == "gpt"
	vfatType, linuxType, rawType := TypeESP, TypeLinux, TypeLinux
	if !gpt {
		vfatType, linuxType, rawType = TypeMBRFAT32, TypeMBRLinux, TypeMBRNonFS
	}
	fit := func(n, least int64) int64 { return max(least, (n+n/8+2*mib+mib-1)/mib*mib) }
	raw := func() {
		for _, r := range s.Extra {
			if !r.File {
				add(Part{Name: r.Name, Type: rawType, Size: (r.Size + mib - 1) / mib * mib})
			}
		}
	}
	if s.Kind == KindUC20 {
		add(Part{Name: "ubuntu-seed", Role: "system-seed", Type: vfatType, Filesystem: "vfat", Label: "ubuntu-seed", Size: fit(seedBytes, minVFAT)})
		raw()
	} else {
		add(Part{Name: "system-boot", Role: "system-boot", Type: vfatType, Filesystem: "vfat", Label: "system-boot", Size: minVFAT})
		raw()
		add(Part{Name: "writable", Role: "system-data", Type: linuxType, Filesystem: "ext4", Label: "writable", Size: fit(seedBytes, minExt4)})
	}
	return parts
}

// GadgetYAML is a meta/gadget.yaml whose one volume describes parts as a
// gadget of that kind and table would; for UC20+ it also lists the
// ubuntu-boot, ubuntu-save and ubuntu-data structures the install boot
// makes (without offsets, so wherever it makes them). An empty
// bootloader is grub on GPT, u-boot on MBR.
func GadgetYAML(kind, table, bootloader string, parts []Part) []byte {
	var y strings.Builder
	if bootloader == "" {
		bootloader = "grub"
		if table == "mbr" {
			bootloader = "u-boot"
		}
	}
	fmt.Fprintf(&y, "volumes:\n  %s:\n    schema: %s\n    bootloader: %s\n    structure:\n", DefaultVolume, table, bootloader)
	for _, p := range parts {
		fmt.Fprintf(&y, "      - name: %s\n", p.Name)
		if p.Role != "" {
			fmt.Fprintf(&y, "        role: %s\n", p.Role)
		}
		fmt.Fprintf(&y, "        type: %s\n", p.Type)
		if p.Filesystem != "" {
			fmt.Fprintf(&y, "        filesystem: %s\n", p.Filesystem)
		}
		if p.Label != "" {
			fmt.Fprintf(&y, "        filesystem-label: %s\n", p.Label)
		}
		fmt.Fprintf(&y, "        offset: %d\n        size: %d\n", p.Offset, p.Size)
	}
	if kind == KindUC16 {
		return []byte(y.String())
	}
	linux := TypeLinux
	if table == "mbr" {
		linux = TypeMBRLinux
	}
	for _, st := range []struct {
		name, role string
		size       int64
	}{{"ubuntu-boot", "system-boot", 750 * mib}, {"ubuntu-save", "system-save", 16 * mib}, {"ubuntu-data", "system-data", 1500 * mib}} {
		fmt.Fprintf(&y, "      - name: %s\n        role: %s\n        type: %s\n        filesystem: ext4\n        filesystem-label: %s\n        size: %d\n",
			st.name, st.role, linux, st.name, st.size)
	}
	return []byte(y.String())
}

// GadgetSnap writes g as a squashfs gadget snap at path: meta/snap.yaml
// (type gadget), meta/gadget.yaml (g.GadgetYAML, which must be set) and
// an executable shell script for each of g.Hooks in meta/hooks/ (nil
// Hooks: prepare-device).
func GadgetSnap(ctx context.Context, path string, g Gadget) error {
	if g.GadgetYAML == nil {
		return errors.New("seedimage: a gadget snap without gadget.yaml")
	}
	if g.Hooks == nil {
		g.Hooks = []string{"prepare-device"}
	}
	if err := need(toolMksquashfs); err != nil {
		return err
	}
	files := map[string][]byte{
		"meta/snap.yaml":   []byte(snapYAML(g.Name, "gadget")),
		"meta/gadget.yaml": g.GadgetYAML,
	}
	exe := map[string]bool{}
	for _, h := range g.Hooks {
		p := "meta/hooks/" + h
		files[p] = []byte("#!/bin/sh\n# " + h + " hook of a test gadget: it does nothing.\nexit 0\n")
		exe[p] = true
	}
	work, err := os.MkdirTemp(filepath.Dir(path), ".gadget-")
	if err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	defer os.RemoveAll(work)
	b := &builder{ctx: ctx, work: work, env: os.Environ()}
	return b.squash(path, files, exe)
}

// squash makes a squashfs of files at out, reproducibly.
func (b *builder) squash(out string, files map[string][]byte, exe map[string]bool) error {
	dir, err := os.MkdirTemp(b.work, "snap-")
	if err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := stage(dir, files, exe); err != nil {
		return err
	}
	os.Remove(out)
	// mksquashfs refuses SOURCE_DATE_EPOCH beside its own time options.
	env := slices.DeleteFunc(slices.Clone(b.env), func(e string) bool { return strings.HasPrefix(e, "SOURCE_DATE_EPOCH=") })
	t := fmt.Sprint(Epoch)
	return run(b.ctx, env, "mksquashfs", dir, out, "-noappend", "-all-root", "-no-xattrs", "-no-progress", "-quiet",
		"-comp", "gzip", "-mkfs-time", t, "-all-time", t, "-processors", "1")
}

// stage writes files under dir with fixed modes and times.
func stage(dir string, files map[string][]byte, exe map[string]bool) error {
	t := time.Unix(Epoch, 0)
	var dirs []string
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("seedimage: %w", err)
		}
		mode := os.FileMode(0o644)
		if exe[p] {
			mode = 0o755
		}
		if err := os.WriteFile(full, data, mode); err != nil {
			return fmt.Errorf("seedimage: %w", err)
		}
		if err := os.Chmod(full, mode); err != nil {
			return fmt.Errorf("seedimage: %w", err)
		}
		if err := os.Chtimes(full, t, t); err != nil {
			return fmt.Errorf("seedimage: %w", err)
		}
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			dirs = append(dirs, filepath.Join(dir, filepath.FromSlash(d)))
		}
	}
	for _, d := range append(dirs, dir) {
		if err := os.Chtimes(d, t, t); err != nil {
			return fmt.Errorf("seedimage: %w", err)
		}
	}
	return nil
}

// table writes the partition table.
func (b *builder) table(disk string, parts []Part) error {
	if b.s.Table == "mbr" {
		var sc strings.Builder
		sc.WriteString("label: dos\nlabel-id: 0x5eed5eed\nunit: sectors\n\n")
		for _, p := range parts {
			fmt.Fprintf(&sc, "start=%d, size=%d, type=%s\n", p.Offset/512, p.Size/512, strings.ToLower(p.Type))
		}
		cmd := exec.CommandContext(b.ctx, "sfdisk", "--no-reread", "--no-tell-kernel", "-q", disk)
		cmd.Env, cmd.Stdin = b.env, strings.NewReader(sc.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("seedimage: sfdisk: %w: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	args := []string{"--disk-guid=5eed0000-0000-4000-8000-000000000000"}
	for _, p := range parts {
		args = append(args,
			fmt.Sprintf("--new=%d:%d:%d", p.Index, p.Offset/512, (p.Offset+p.Size)/512-1),
			fmt.Sprintf("--typecode=%d:%s", p.Index, p.Type),
			fmt.Sprintf("--change-name=%d:%s", p.Index, p.Name),
			fmt.Sprintf("--partition-guid=%d:5eed0000-0000-4000-8000-%012d", p.Index, p.Index))
	}
	return sgdisk(b.ctx, b.env, disk, args)
}

// gptTables are the tables sgdisk wrote, by its arguments and the disk's
// size: the sectors of its primary and backup GPT (and protective MBR).
// sgdisk sleeps a second after every write (it waits for the kernel to
// re-read a real disk's table); a bench of images of one layout runs it
// once and writes its bytes again.
var gptTables sync.Map

type gptTable struct{ head, tail []byte }

const (
	gptHead = 34 * 512 // protective MBR, primary header, 128 entries
	gptTail = 33 * 512 // backup entries and header
)

func sgdisk(ctx context.Context, env []string, disk string, args []string) error {
	st, err := os.Stat(disk)
	if err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	size := st.Size()
	key := fmt.Sprint(size, args)
	if t, ok := gptTables.Load(key); ok {
		f, err := os.OpenFile(disk, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("seedimage: %w", err)
		}
		_, err = f.WriteAt(t.(gptTable).head, 0)
		if err == nil {
			_, err = f.WriteAt(t.(gptTable).tail, size-gptTail)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("seedimage: %w", err)
		}
		return nil
	}
	if err := run(ctx, env, "sgdisk", append(args, disk)...); err != nil {
		return err
	}
	f, err := os.Open(disk)
	if err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	defer f.Close()
	t := gptTable{head: make([]byte, gptHead), tail: make([]byte, gptTail)}
	if _, err := f.ReadAt(t.head, 0); err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	if _, err := f.ReadAt(t.tail, size-gptTail); err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	gptTables.Store(key, t)
	return nil
}

// vfat makes p's vfat file system holding files.
func (b *builder) vfat(p Part, files []file) (string, error) {
	fsFile := b.temp()
	if err := createSized(fsFile, p.Size); err != nil {
		return "", err
	}
	if err := run(b.ctx, b.env, "mkfs.vfat", "-F", "16", "-s", "1", "--invariant", "-i", fmt.Sprintf("5eed%04x", p.Index), "-n", p.Label, fsFile); err != nil {
		return "", err
	}
	made := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.path); d != "." && !made[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
			made[d] = true
		}
		for _, d := range parents {
			if err := run(b.ctx, b.env, "mmd", "-i", fsFile, "::/"+d); err != nil {
				return "", err
			}
		}
		src := b.temp()
		if err := writeDated(src, f.data); err != nil {
			return "", err
		}
		if err := run(b.ctx, b.env, "mcopy", "-m", "-i", fsFile, src, "::/"+f.path); err != nil {
			return "", err
		}
	}
	return fsFile, nil
}

// ext4 makes p's ext4 file system (mkfs.ext4 -d) holding files.
func (b *builder) ext4(p Part, files []file) (string, error) {
	m := map[string][]byte{}
	for _, f := range files {
		m[f.path] = f.data
	}
	dir, err := os.MkdirTemp(b.work, "ext4-")
	if err != nil {
		return "", fmt.Errorf("seedimage: %w", err)
	}
	if err := stage(dir, m, nil); err != nil {
		return "", err
	}
	fsFile := b.temp()
	uuid := fmt.Sprintf("5eed0000-0000-4000-8000-%012d", 100+p.Index)
	if err := run(b.ctx, b.env, "mkfs.ext4", "-q", "-F", "-L", p.Label, "-U", uuid, "-E", "root_owner=0:0,hash_seed="+uuid,
		"-d", dir, fsFile, fmt.Sprint(p.Size/1024)); err != nil {
		return "", err
	}
	// mkfs.ext4 -d copies each inode's change time from the staging
	// directory, where it is the clock's: debugfs sets them to the epoch.
	paths := map[string]bool{"/": true}
	for _, f := range files {
		for q := "/" + f.path; q != "/"; q = path.Dir(q) {
			paths[q] = true
		}
	}
	var script strings.Builder
	for _, q := range slices.Sorted(maps.Keys(paths)) {
		fmt.Fprintf(&script, "sif %q ctime @%d\n", q, Epoch)
	}
	cmds := b.temp()
	if err := os.WriteFile(cmds, []byte(script.String()), 0o644); err != nil {
		return "", fmt.Errorf("seedimage: %w", err)
	}
	if err := run(b.ctx, b.env, "debugfs", "-w", "-f", cmds, fsFile); err != nil {
		return "", err
	}
	return fsFile, nil
}

func (b *builder) temp() string {
	b.n++
	return filepath.Join(b.work, fmt.Sprintf("f%d", b.n))
}

func writeDated(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	t := time.Unix(Epoch, 0)
	if err := os.Chtimes(path, t, t); err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	return nil
}

// randomBytes are n bytes drawn from a generator seeded by name.
func randomBytes(name string, n int64) []byte {
	var key [32]byte
	copy(key[:], "seedimage:"+name)
	out := make([]byte, n)
	rand.NewChaCha8(key).Read(out)
	return out
}

func createSized(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("seedimage: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	return nil
}

// copyInto writes src (at most size bytes) into dst at off, leaving its
// all-zero 4 KiB blocks as holes.
func copyInto(dst string, off int64, src string, size int64) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	if int64(len(data)) > size {
		return fmt.Errorf("seedimage: %s is %d bytes, its partition %d", src, len(data), size)
	}
	out, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	const block = 4096
	for at := 0; at < len(data); at += block {
		chunk := data[at:min(at+block, len(data))]
		if allZero(chunk) {
			continue
		}
		if _, err := out.WriteAt(chunk, off+int64(at)); err != nil {
			out.Close()
			return fmt.Errorf("seedimage: %w", err)
		}
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("seedimage: %w", err)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("seedimage: %s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
