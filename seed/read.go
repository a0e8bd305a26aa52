package seed

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
	"github.com/diskfs/go-diskfs/partition"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/flashstation/flashstation/internal/yamlbound"
	"github.com/flashstation/flashstation/serialvault"
)

// Bounds on what Read takes from an image: a hostile image cannot make
// the station read or hold more than this.
const (
	sectorSize       = 512
	maxPartitions    = 128     // GPT's usual entry count
	maxDirEntries    = 4096    // entries read from one seed directory
	maxAssertionFile = 1 << 20 // one assertion file (a model with many snaps is a few KiB)
	maxAssertions    = 8 << 20 // all of a seed's assertion files together
	maxGadgetSnap    = 256 << 20
	maxMetaFile      = 1 << 20 // meta/snap.yaml, meta/gadget.yaml, seed.yaml
)

// Seed locations.
const (
	uc20SeedName = "ubuntu-seed"
	uc16DataName = "writable"
	uc16SeedDir  = "system-data/var/lib/snapd/seed"
)

// ErrNotImage is Read's error for a file it cannot read as a disk image
// (not a regular file or block device, or empty).
var ErrNotImage = errors.New("not a disk image")

// Read reads the partition table and the seed of the raw disk image at
// path, read-only and without mounting. The error is for an image that
// cannot be opened at all (missing, unreadable, a directory, a context
// cancelled); an image that opens but holds no table or no seed is an
// Image whose Table or Seed is empty, with SeedErr saying why, so that
// Check can say which refusal it is.
func Read(ctx context.Context, imagePath string) (img *Image, err error) {
	f, err := os.Open(imagePath)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	size := st.Size()
	switch mode := st.Mode(); {
	case mode.IsRegular():
	case mode&fs.ModeDevice != 0:
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return nil, fmt.Errorf("seed: %s: size of the device: %w", imagePath, err)
		}
	default:
		return nil, fmt.Errorf("seed: %s: %w (a %s)", imagePath, ErrNotImage, mode.Type())
	}
	return readFrom(ctx, imagePath, f, size)
}

// readFrom reads an image from r (of size bytes: a block device states
// none).
func readFrom(ctx context.Context, name string, r backend.File, size int64) (*Image, error) {
	img := &Image{Path: name, Size: size}
	if size < 2*sectorSize {
		img.SeedErr = fmt.Sprintf("the image is %d bytes, too small for a partition table", size)
		return img, nil
	}
	table, err := readTable(r)
	if err != nil {
		img.SeedErr = "no partition table: " + err.Error()
		return img, nil
	}
	img.Table = table.kind
	img.Partitions = table.parts
	img.TableProblem = tableProblem(r, table, size)
	for i := range img.Partitions {
		p := &img.Partitions[i]
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p.FileSystem = sniffFS(r, p.Start, p.Size)
		if fsys, err := openFS(r, p); err == nil {
			p.Label = clean(strings.TrimSpace(fsys.Label()))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	findSeed(ctx, r, img)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return img, nil
}

type table struct {
	kind    string
	parts   []Partition
	problem string
}

// tableProblem checks that every board reads the table the gate read:
// a GPT needs a protective MBR in front of it (Linux, UEFI and the Pi's
// firmware read a plain or hybrid MBR's partitions instead), and no
// partition may overlap another or run past the image.
func tableProblem(r io.ReaderAt, t table, size int64) string {
	if t.problem != "" {
		return t.problem
	}
	if t.kind == "gpt" {
		var mbr [sectorSize]byte
		if _, err := r.ReadAt(mbr[:], 0); err != nil {
			return "the MBR in front of the GPT does not read"
		}
		protective, others := false, 0
		for i := 0; i < 4; i++ {
			e := mbr[446+16*i : 446+16*(i+1)]
			switch {
			case e[4] == 0xEE:
				protective = true
			case e[4] != 0:
				others++
			}
		}
		switch {
		case mbr[510] != 0x55 || mbr[511] != 0xAA || !protective:
			return "the GPT has no protective MBR in front of it: boards that read the MBR would see another table"
		case others > 0:
			return fmt.Sprintf("a hybrid MBR (%d partitions beside the protective one) in front of the GPT: boards that read the MBR would boot other partitions than the gate checked", others)
		}
	}
	parts := slices.Clone(t.parts)
	slices.SortFunc(parts, func(a, b Partition) int { return int(min(max(a.Start-b.Start, -1), 1)) })
	for i, p := range parts {
		if p.Size <= 0 || p.Start < sectorSize || p.Start+p.Size > size {
			return fmt.Sprintf("partition %d (%d bytes at %d) runs past the image's %d bytes", p.Index, p.Size, p.Start, size)
		}
		if i > 0 && parts[i-1].Start+parts[i-1].Size > p.Start {
			return fmt.Sprintf("partitions %d and %d overlap", parts[i-1].Index, p.Index)
		}
	}
	return ""
}

// clean makes a string read from the image safe to print: control and
// invalid characters (a terminal's escape sequences among them) become
// U+FFFD, and it is cut at 256 bytes.
func clean(s string) string {
	if len(s) > 256 {
		s = s[:256]
	}
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || (!unicode.IsPrint(r) && r != ' ') {
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// readTable reads the GPT (primary, or backup when the primary is
// damaged) or, failing that, the MBR.
func readTable(r backend.File) (t table, err error) {
	defer catch(&err, "partition table")
	pt, err := partition.Read(r, sectorSize, sectorSize)
	if err != nil {
		return t, err
	}
	switch pt := pt.(type) {
	case *gpt.Table:
		t.kind = "gpt"
		for i, p := range pt.Partitions {
			if p == nil || p.Type == gpt.Unused || i >= maxPartitions {
				continue
			}
			if p.End < p.Start || p.Start > 1<<54 || p.End > 1<<54 {
				continue
			}
			index := p.Index
			if index <= 0 {
				index = i + 1
			}
			t.parts = append(t.parts, Partition{Index: index, Name: clean(p.Name), Type: clean(strings.ToUpper(string(p.Type))),
				Start: int64(p.Start) * sectorSize, Size: int64(p.End-p.Start+1) * sectorSize})
		}
		if pt.RecoveredFromBackup {
			t.problem = "the primary GPT is damaged (the table was read from its backup at the end of the image): boards would not read the same table"
		}
	case *mbr.Table:
		t.kind = "mbr"
		for i, p := range pt.Partitions {
			if p == nil || p.Type == mbr.Empty || p.Size == 0 {
				continue
			}
			if p.Type == mbr.GPTProtective {
				return table{}, errors.New("a protective MBR without a readable GPT behind it")
			}
			t.parts = append(t.parts, Partition{Index: i + 1, Type: fmt.Sprintf("%02X", byte(p.Type)),
				Start: int64(p.Start) * sectorSize, Size: int64(p.Size) * sectorSize})
		}
	default:
		return t, fmt.Errorf("an unknown partition table (%T)", pt)
	}
	return t, nil
}

// sniffFS names the file system a partition starts with, by its magic
// numbers: "vfat", "ext4" (ext2/3/4), "squashfs", or "".
func sniffFS(r io.ReaderAt, start, size int64) string {
	var b [2048]byte
	n, _ := r.ReadAt(b[:min(int64(len(b)), max(size, 0))], start)
	h := b[:n]
	switch {
	case len(h) >= 4 && string(h[:4]) == "hsqs":
		return "squashfs"
	case len(h) >= 1024+58 && binary.LittleEndian.Uint16(h[1024+56:]) == 0xEF53:
		return "ext4"
	case len(h) >= 512 && h[510] == 0x55 && h[511] == 0xAA &&
		(bytes.HasPrefix(h[54:], []byte("FAT")) || bytes.HasPrefix(h[82:], []byte("FAT32"))):
		return "vfat"
	}
	return ""
}

// openFS opens a partition's file system read-only, by the kind sniffFS
// found.
func openFS(r backend.File, p *Partition) (fsys filesystem.FileSystem, err error) {
	defer catch(&err, "file system of partition "+fmt.Sprint(p.Index))
	b := file.New(r, true)
	switch p.FileSystem {
	case "vfat":
		var errs []error
		if f, err := fat32.Read(b, p.Size, p.Start, sectorSize); err == nil {
			return f, nil
		} else {
			errs = append(errs, err)
		}
		if f, err := fat16.Read(b, p.Size, p.Start, sectorSize); err == nil {
			return f, nil
		} else {
			errs = append(errs, err)
		}
		if f, err := fat12.Read(b, p.Size, p.Start, sectorSize); err == nil {
			return f, nil
		} else {
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("a FAT file system that does not read: %w", errors.Join(errs...))
	case "ext4":
		f, err := ext4.Read(b, p.Size, p.Start, sectorSize)
		if err != nil {
			return nil, fmt.Errorf("an ext4 file system that does not read: %w", err)
		}
		return f, nil
	case "squashfs":
		f, err := squashfs.Read(b, p.Size, p.Start, sectorSize)
		if err != nil {
			return nil, fmt.Errorf("a squashfs that does not read: %w", err)
		}
		return f, nil
	}
	return nil, errors.New("no file system the reader knows")
}

// catch turns a panic of the file system library on a hostile image into
// an error.
func catch(err *error, what string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("the %s does not read (the reader failed: %v)", what, r)
	}
}

// findSeed looks for the UC20+ seed (ubuntu-seed), then the UC16/18 one
// (writable), and fills img.Seed or img.SeedErr.
func findSeed(ctx context.Context, r backend.File, img *Image) {
	var why []string
	for _, want := range []struct{ kind, name, fs string }{{KindUC20, uc20SeedName, "vfat"}, {KindUC16, uc16DataName, "ext4"}} {
		p := partitionNamed(img, want.name)
		if p == nil {
			continue
		}
		if n := countNamed(img, want.name); n > 1 {
			img.Ambiguous = append(img.Ambiguous, fmt.Sprintf("%d partitions named or labelled %s", n, want.name))
		}
		if len(why) > 0 {
			// An ubuntu-seed that does not read is the image's seed: a
			// writable partition behind it is not looked at instead.
			break
		}
		if p.FileSystem != want.fs {
			why = append(why, fmt.Sprintf("partition %d (%s) is not %s (%s)", p.Index, want.name, want.fs, fsWords(p.FileSystem)))
			continue
		}
		fsys, err := openFS(r, p)
		if err != nil {
			why = append(why, fmt.Sprintf("partition %d (%s): %v", p.Index, want.name, err))
			continue
		}
		var s *Seed
		if want.kind == KindUC20 {
			s, err = readUC20(ctx, fsys)
		} else {
			s, err = readUC16(ctx, fsys)
		}
		if err != nil {
			why = append(why, fmt.Sprintf("partition %d (%s): %v", p.Index, want.name, err))
			continue
		}
		s.Partition = p.Index
		img.Seed = s
		img.Ambiguous = append(img.Ambiguous, s.ambiguous...)
		return
	}
	if len(why) == 0 {
		names := make([]string, 0, len(img.Partitions))
		for _, p := range img.Partitions {
			names = append(names, partitionWords(p))
		}
		if len(names) == 0 {
			names = append(names, "none")
		}
		why = append(why, fmt.Sprintf("no ubuntu-seed (Ubuntu Core 20+) or writable (Ubuntu Core 16/18) partition; its partitions: %s", strings.Join(names, "; ")))
	}
	img.SeedErr = strings.Join(why, "; ")
}

func fsWords(fs string) string {
	if fs == "" {
		return "no known file system"
	}
	return fs
}

// countNamed counts the partitions a board could take for name: by GPT
// name or by file system label, whatever the case of the label.
func countNamed(img *Image, name string) int {
	n := 0
	for _, p := range img.Partitions {
		if p.Name == name || strings.EqualFold(p.Label, name) {
			n++
		}
	}
	return n
}

// partitionNamed finds a partition by GPT name, then by file system label.
func partitionNamed(img *Image, name string) *Partition {
	for i := range img.Partitions {
		if img.Partitions[i].Name == name {
			return &img.Partitions[i]
		}
	}
	for i := range img.Partitions {
		if img.Partitions[i].Label == name {
			return &img.Partitions[i]
		}
	}
	return nil
}

// readUC20 reads systems/<label>/ and snaps/ of an ubuntu-seed.
func readUC20(ctx context.Context, fsys filesystem.FileSystem) (s *Seed, err error) {
	defer catch(&err, "seed")
	systems, err := readDir(fsys, "systems")
	if err != nil {
		return nil, fmt.Errorf("no systems/ directory: %w", err)
	}
	s = &Seed{Kind: KindUC20}
	for _, e := range systems {
		if e.IsDir() && validLabel(e.Name()) {
			s.Systems = append(s.Systems, e.Name())
		}
	}
	if len(s.Systems) == 0 {
		return nil, errors.New("systems/ holds no recovery system")
	}
	slices.Sort(s.Systems)
	s.Label = s.Systems[len(s.Systems)-1]
	if len(s.Systems) > 1 {
		// A fresh image holds the one system ubuntu-image made; a board
		// boots the one its bootloader names, which need not be this.
		s.ambiguous = append(s.ambiguous, fmt.Sprintf("%d recovery systems (%s)", len(s.Systems), strings.Join(s.Systems, ", ")))
	}
	dir := "systems/" + s.Label
	s.ModelFile = dir + "/model"
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.ModelBytes, err = readBounded(fsys, s.ModelFile, maxAssertionFile)
	if err != nil {
		s.ModelErr = err.Error()
	} else {
		s.Model, s.ModelErr = decodeModel(s.ModelBytes)
	}
	for _, a := range readAssertionDir(fsys, dir+"/assertions") {
		s.Assertions = append(s.Assertions, a.assertion)
	}
	snaps, _ := readDir(fsys, "snaps")
	files := map[string][]string{}
	for _, e := range snaps {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".snap") {
			s.Snaps = append(s.Snaps, clean(e.Name()))
			if name, _, ok := strings.Cut(e.Name(), "_"); ok {
				files[name] = append(files[name], "snaps/"+e.Name())
			}
		}
	}
	// A dangerous-grade model may take unasserted snaps from the system's
	// own snaps/ directory.
	local, _ := readDir(fsys, dir+"/snaps")
	for _, e := range local {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".snap") {
			s.Snaps = append(s.Snaps, clean(path.Join(s.Label, e.Name())))
			if name, _, ok := strings.Cut(e.Name(), "_"); ok {
				files[name] = append(files[name], dir+"/snaps/"+e.Name())
			}
		}
	}
	readGadget(ctx, fsys, s, files)
	return s, nil
}

// validLabel is a recovery system label as snapd makes them: letters,
// digits and dashes, at most 64.
func validLabel(l string) bool {
	if l == "" || len(l) > 64 {
		return false
	}
	for _, c := range l {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// seedYAML is the UC16/18 seed's snap list.
type seedYAML struct {
	Snaps []struct {
		Name string `yaml:"name"`
		File string `yaml:"file"`
	} `yaml:"snaps"`
}

// readUC16 reads system-data/var/lib/snapd/seed/ of a writable partition.
func readUC16(ctx context.Context, fsys filesystem.FileSystem) (s *Seed, err error) {
	defer catch(&err, "seed")
	if _, err := readDir(fsys, uc16SeedDir); err != nil {
		return nil, fmt.Errorf("no %s/ directory: %w", uc16SeedDir, err)
	}
	s = &Seed{Kind: KindUC16}
	all := readAssertionDir(fsys, uc16SeedDir+"/assertions")
	models := 0
	for _, a := range all {
		if a.assertion.Type() == "model" {
			if models++; s.ModelBytes == nil {
				s.ModelFile, s.ModelBytes = a.file, a.raw
				s.Model, s.ModelErr = decodeModel(a.raw)
			}
			continue
		}
		s.Assertions = append(s.Assertions, a.assertion)
	}
	if models > 1 {
		s.ambiguous = append(s.ambiguous, fmt.Sprintf("%d model assertions in %s/assertions", models, uc16SeedDir))
	}
	if s.ModelBytes == nil {
		s.ModelFile = uc16SeedDir + "/assertions/"
		s.ModelErr = "no model assertion among the seed's assertions"
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// seed.yaml names the snaps snapd seeds; without it, the files.
	files := map[string][]string{}
	data, err := readBounded(fsys, uc16SeedDir+"/seed.yaml", maxMetaFile)
	if err == nil {
		var sy seedYAML
		if err := yamlbound.Decode("seed.yaml", data, &sy, yamlbound.Limits{What: "seed.yaml", MaxBytes: maxMetaFile}); err == nil {
			for _, sn := range sy.Snaps {
				if sn.Name != "" && sn.File != "" && !strings.Contains(sn.File, "/") {
					files[sn.Name] = append(files[sn.Name], uc16SeedDir+"/snaps/"+sn.File)
				}
			}
		}
	}
	listed := len(files) > 0
	snaps, _ := readDir(fsys, uc16SeedDir+"/snaps")
	for _, e := range snaps {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".snap") {
			s.Snaps = append(s.Snaps, clean(e.Name()))
			if name, _, ok := strings.Cut(e.Name(), "_"); ok && !listed {
				files[name] = append(files[name], uc16SeedDir+"/snaps/"+e.Name())
			}
		}
	}
	readGadget(ctx, fsys, s, files)
	return s, nil
}

// decodeModel decodes a model assertion; the string says why not.
func decodeModel(b []byte) (*serialvault.Model, string) {
	a, err := serialvault.Decode(b)
	if err != nil {
		return nil, err.Error()
	}
	m, err := serialvault.AsModel(a)
	if err != nil {
		return nil, err.Error()
	}
	return m, ""
}

type seedAssertion struct {
	file      string
	raw       []byte
	assertion *serialvault.Assertion
}

// readAssertionDir decodes the assertions of every file of a directory
// (each may hold a stream of them), within the bounds; what does not
// decode is left out: the check then misses what it needed and says so.
func readAssertionDir(fsys filesystem.FileSystem, dir string) []*seedAssertion {
	entries, err := readDir(fsys, dir)
	if err != nil {
		return nil
	}
	var out []*seedAssertion
	total := 0
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		name := dir + "/" + e.Name()
		b, err := readBounded(fsys, name, maxAssertionFile)
		if err != nil || total+len(b) > maxAssertions {
			continue
		}
		total += len(b)
		if a, err := serialvault.Decode(b); err == nil {
			out = append(out, &seedAssertion{file: name, raw: b, assertion: a})
			continue
		}
		stream, _ := serialvault.DecodeStream(b)
		for _, a := range stream {
			out = append(out, &seedAssertion{file: name, raw: a.Encode(), assertion: a})
		}
	}
	return out
}

// readGadget opens the model's gadget snap, a squashfs inside the seed.
func readGadget(ctx context.Context, fsys filesystem.FileSystem, s *Seed, files map[string][]string) {
	name := ""
	if s.Model != nil {
		name = s.Model.Gadget
	}
	// Ubuntu Core 16/18 models name the gadget with its track:
	// "pi=18-pi2" is the snap pi.
	name, _, _ = strings.Cut(name, "=")
	if name == "" {
		s.GadgetErr = "the model names no gadget"
		return
	}
	candidates := files[name]
	if len(candidates) == 0 {
		s.GadgetErr = fmt.Sprintf("no %s_*.snap in the seed (its snaps: %s)", clean(name), listWords(s.Snaps))
		return
	}
	if len(candidates) > 1 {
		s.ambiguous = append(s.ambiguous, fmt.Sprintf("%d gadget snaps %s (%s)", len(candidates), clean(name), clean(strings.Join(candidates, ", "))))
	}
	file := candidates[0]
	if ctx.Err() != nil {
		return
	}
	g, err := openGadget(fsys, file)
	if err != nil {
		s.GadgetErr = fmt.Sprintf("%s: %v", file, err)
		return
	}
	s.Gadget = g
}

func listWords(l []string) string {
	switch {
	case len(l) == 0:
		return "none"
	case len(l) > 10:
		return strings.Join(l[:10], ", ") + fmt.Sprintf(" and %d more", len(l)-10)
	}
	return strings.Join(l, ", ")
}

// snapYAML is the part of meta/snap.yaml the gate reads.
type snapYAML struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
}

func openGadget(fsys filesystem.FileSystem, file string) (g *Gadget, err error) {
	defer catch(&err, "gadget snap")
	b, err := readBounded(fsys, file, maxGadgetSnap)
	if err != nil {
		return nil, err
	}
	if len(b) < 4 || string(b[:4]) != "hsqs" {
		return nil, errors.New("not a squashfs snap")
	}
	sq, err := squashfs.Read(file2storage(b), int64(len(b)), 0, 0) // 0: the default block size
	if err != nil {
		return nil, fmt.Errorf("the squashfs does not read: %w", err)
	}
	g = &Gadget{File: clean(path.Base(file)), Hooks: []string{}}
	if data, err := readBounded(sq, "meta/snap.yaml", maxMetaFile); err == nil {
		var sy snapYAML
		if err := yamlbound.Decode("meta/snap.yaml", data, &sy, yamlbound.Limits{What: "meta/snap.yaml", MaxBytes: maxMetaFile}); err == nil {
			g.Name = clean(sy.Name)
		}
	}
	if hooks, err := readDir(sq, "meta/hooks"); err == nil {
		for _, h := range hooks {
			if !h.IsDir() {
				g.Hooks = append(g.Hooks, clean(h.Name()))
			}
		}
		slices.Sort(g.Hooks)
	}
	data, err := readBounded(sq, "meta/gadget.yaml", maxMetaFile)
	if err != nil {
		g.YAMLErr = err.Error()
		return g, nil
	}
	g.Volumes, err = parseGadgetYAML(data)
	if err != nil {
		g.YAMLErr = err.Error()
	}
	return g, nil
}

// readDir lists a directory, bounded.
func readDir(fsys fs.ReadDirFS, dir string) ([]fs.DirEntry, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(entries) > maxDirEntries {
		entries = entries[:maxDirEntries]
	}
	return entries, nil
}

// readBounded reads a file of at most limit bytes.
func readBounded(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	size := int64(-1)
	if st, err := f.Stat(); err == nil {
		if st.IsDir() {
			return nil, fmt.Errorf("%s is a directory", name)
		}
		if st.Size() > limit {
			return nil, fmt.Errorf("%s is %d bytes, more than the %d the station reads", name, st.Size(), limit)
		}
		size = st.Size()
	}
	b, err := readAll(f, limit+1)
	if errors.Is(err, io.ErrNoProgress) && size > int64(len(b)) {
		// go-diskfs's ext4 reader stops at a hole at the end of a sparse
		// file (mkfs.ext4 -d keeps a padded snap's zero tail as one, on
		// 1 KiB blocks): the rest of the file is zeros.
		b, err = append(b, make([]byte, size-int64(len(b)))...), nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if size >= 0 && int64(len(b)) > size {
		// go-diskfs's FAT16 reader reads on to the end of the last
		// sector; the directory entry's size is the file's.
		b = b[:size]
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is more than the %d bytes the station reads", name, limit)
	}
	return b, nil
}

// readAll reads r to its end or to limit bytes. A reader that returns
// nothing and no error again and again (go-diskfs's ext4 reader past an
// extent it cannot map) is an error, not a loop forever.
func readAll(r io.Reader, limit int64) ([]byte, error) {
	var b []byte
	buf := make([]byte, 64<<10)
	stalls := 0
	for int64(len(b)) < limit {
		n, err := r.Read(buf[:min(int64(len(buf)), limit-int64(len(b)))])
		b = append(b, buf[:n]...)
		switch {
		case errors.Is(err, io.EOF):
			return b, nil
		case err != nil:
			return nil, err
		case n == 0:
			if stalls++; stalls > 16 {
				return b, fmt.Errorf("the file system reader makes no progress after %d bytes: %w", len(b), io.ErrNoProgress)
			}
		default:
			stalls = 0
		}
	}
	return b, nil
}

// memFile is a file's bytes as the file system readers' storage.
type memFile struct {
	*bytes.Reader
	size int64
}

func file2storage(b []byte) backend.Storage {
	return &memFile{Reader: bytes.NewReader(b), size: int64(len(b))}
}

func (m *memFile) Stat() (fs.FileInfo, error)              { return memInfo{m.size}, nil }
func (m *memFile) Close() error                            { return nil }
func (m *memFile) Sys() (*os.File, error)                  { return nil, backend.ErrNotSuitable }
func (m *memFile) Writable() (backend.WritableFile, error) { return nil, backend.ErrIncorrectOpenMode }
func (m *memFile) Path() string                            { return "" }

type memInfo struct{ size int64 }

func (i memInfo) Name() string       { return "image" }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o444 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }
