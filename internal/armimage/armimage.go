// Package armimage builds the armhf QEMU bench board's bootable disk
// image: a GPT disk (sgdisk) whose first partition, ubuntu-seed, is a vfat
// (mkfs.vfat, then mtools' mcopy) holding what U-Boot's distro boot finds
// and what Ubuntu Core 20+ lays out on its seed:
//
//	extlinux/extlinux.conf   the boot menu (see package seedconf)
//	kernel.img               Debian's armhf armmp vmlinuz (zImage)
//	initrd.img               a cpio initramfs: /init is our board program
//	                         (cmd/flashstation-board), plus the virtio modules
//	systems/<label>/model    the line's model assertion
//	snaps/<gadget>_1.snap    the model's gadget snap (squashfs, mksquashfs):
//	                         meta/snap.yaml, meta/hooks/prepare-device and a
//	                         meta/gadget.yaml describing this disk
//	                         (internal/seedimage); none when the model names
//	                         no gadget
//
// The kernel assets come from scripts/qemu-kernel.sh. The same inputs give
// the same bytes (fixed GUIDs, volume id, and times through
// SOURCE_DATE_EPOCH, which mtools honours), and Build keeps built images
// in a cache directory under the hash of their inputs.
//
// The init rewrites the boot menu's mode on the disk at the end of the
// install boot, so a booted image is not the image built: boot a copy.
//
// QEMU gives the qemu-system-arm command line that boots such a disk
// (Debian's U-Boot for the virt machine, the console on a terminal), as
// the package's tests and, later, the bench's QEMU board run it. Every
// board boots the same image; what makes one board itself is its Identity
// (serial, device key, device service, factory login), which
// QEMU.WithIdentity puts on a read-only virtio "EEPROM" disk the board's
// init reads. The board's network reaches only the station's proxy
// (QEMU.Proxy, seen by the guest at ProxyGuestAddr, see GuestServiceURL),
// each connection relayed by a forwarder process (ForwardMain).
// NOTES.md has the measured boot stages.
package armimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/internal/armimage/seedconf"
	"github.com/flashstation/flashstation/internal/seedimage"
	"github.com/flashstation/flashstation/serialvault"
)

// Layout of the disk.
const (
	SeedOffset = 1 << 20  // the ubuntu-seed partition starts at 1 MiB
	SeedSize   = 48 << 20 // and spans 48 MiB
	// DiskSize leaves 1 MiB after the partition for the backup GPT.
	DiskSize = SeedOffset + SeedSize + 1<<20

	// KernelPath and InitrdPath are where the kernel and the initramfs
	// are on the seed partition.
	KernelPath = "/kernel.img"
	InitrdPath = "/initrd.img"
)

// epoch is the time of every file and of the vfat's own records.
const epoch = 1700000000 // 2023-11-14T22:13:20Z

// formatVersion changes when the layout changes, so cached images built
// by an older Build are not reused.
const formatVersion = "armimage-3"

// Config is what an image is built from.
type Config struct {
	// KernelDir holds vmlinuz and modules/ (the .ko files and their load
	// order in modules/order), as scripts/qemu-kernel.sh leaves them.
	KernelDir string
	// Init is the static armhf board program, the initramfs's /init
	// (see BuildInit).
	Init string
	// Model is the model assertion put at systems/<Label>/model.
	Model []byte
	// Label is the recovery system's label, e.g. 20240210.
	Label string
	// Fault is the fault the board acts out (seedconf.Fault*; "" is none).
	// The bench can change it on a flashed disk with SetFault.
	Fault string
	// PowerOff makes the board power off once its console is ready.
	PowerOff bool
	// CacheDir keeps built images, named by their input hash.
	CacheDir string
}

// Image is a built disk image.
type Image struct {
	Path   string // in the cache directory: copy it before booting
	Bmap   string // its block map (Path + ".bmap")
	Hash   string // of the inputs, hex
	Cached bool   // found in the cache, not built
}

// Build returns the image for cfg, from the cache when it is there.
func Build(ctx context.Context, cfg Config) (Image, error) {
	if cfg.Fault == "" {
		cfg.Fault = seedconf.FaultNone
	}
	if cfg.CacheDir == "" {
		return Image{}, errors.New("armimage: no cache directory")
	}
	in, err := readInputs(cfg)
	if err != nil {
		return Image{}, err
	}
	img := Image{Hash: in.hash(cfg)}
	img.Path = filepath.Join(cfg.CacheDir, "image-"+img.Hash[:16]+".img")
	img.Bmap = img.Path + ".bmap"
	if _, err := os.Stat(img.Path); err == nil {
		if _, err := os.Stat(img.Bmap); err == nil {
			img.Cached = true
			prune(cfg.CacheDir, img.Path, time.Now())
			return img, nil
		}
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return Image{}, fmt.Errorf("armimage: %w", err)
	}
	work, err := os.MkdirTemp(cfg.CacheDir, ".build-")
	if err != nil {
		return Image{}, fmt.Errorf("armimage: %w", err)
	}
	defer os.RemoveAll(work)
	disk, err := build(ctx, work, cfg, in)
	if err != nil {
		return Image{}, err
	}
	// The bmap first: an image in the cache always has its bmap.
	if err := os.Rename(disk+".bmap", img.Bmap); err != nil {
		return Image{}, fmt.Errorf("armimage: %w", err)
	}
	if err := os.Rename(disk, img.Path); err != nil {
		return Image{}, fmt.Errorf("armimage: %w", err)
	}
	prune(cfg.CacheDir, img.Path, time.Now())
	return img, nil
}

// The cache keeps the keepImages images used last, and any used within
// keepFor (another process may be about to copy it); a build directory
// left by a killed build goes after keepFor too.
const (
	keepImages = 4
	keepFor    = time.Hour
)

// prune marks used as just used and removes what the cache no longer
// keeps. It is best effort: a cache it cannot tidy still works.
func prune(dir, used string, now time.Time) {
	os.Chtimes(used, now, now)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type image struct {
		path string
		at   time.Time
	}
	var images []image
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		switch {
		case e.IsDir() && strings.HasPrefix(e.Name(), ".build-"):
			if now.Sub(info.ModTime()) > keepFor {
				os.RemoveAll(path)
			}
		case !e.IsDir() && strings.HasPrefix(e.Name(), "image-") && strings.HasSuffix(e.Name(), ".img"):
			images = append(images, image{path, info.ModTime()})
		}
	}
	slices.SortFunc(images, func(a, b image) int { return b.at.Compare(a.at) })
	for i, im := range images {
		if i < keepImages || now.Sub(im.at) <= keepFor || im.path == used {
			continue
		}
		os.Remove(im.path + ".bmap")
		os.Remove(im.path)
	}
}

// inputs are the bytes an image is made of.
type inputs struct {
	kernel  []byte
	init    []byte
	modules []cpioEntry // lib/modules/*.ko and lib/modules/order
}

func readInputs(cfg Config) (inputs, error) {
	var in inputs
	var err error
	if in.kernel, err = os.ReadFile(filepath.Join(cfg.KernelDir, "vmlinuz")); err != nil {
		return in, fmt.Errorf("armimage: kernel: %w", err)
	}
	if in.init, err = os.ReadFile(cfg.Init); err != nil {
		return in, fmt.Errorf("armimage: init: %w", err)
	}
	order, err := os.ReadFile(filepath.Join(cfg.KernelDir, "modules", "order"))
	if err != nil {
		return in, fmt.Errorf("armimage: modules: %w", err)
	}
	in.modules = append(in.modules, cpioEntry{name: "lib/modules/order", mode: 0o644, data: order})
	for _, name := range strings.Fields(string(order)) {
		data, err := os.ReadFile(filepath.Join(cfg.KernelDir, "modules", name))
		if err != nil {
			return in, fmt.Errorf("armimage: modules: %w", err)
		}
		in.modules = append(in.modules, cpioEntry{name: "lib/modules/" + name, mode: 0o644, data: data})
	}
	return in, nil
}

func (in inputs) hash(cfg Config) string {
	h := sha256.New()
	field := func(b []byte) { fmt.Fprintf(h, "%d:", len(b)); h.Write(b) }
	field([]byte(formatVersion))
	field(in.kernel)
	field(in.init)
	for _, m := range in.modules {
		field([]byte(m.name))
		field(m.data)
	}
	field(cfg.Model)
	field([]byte(cfg.Label))
	field([]byte(cfg.Fault))
	field([]byte(fmt.Sprint(cfg.PowerOff)))
	return hex.EncodeToString(h.Sum(nil))
}

func build(ctx context.Context, work string, cfg Config, in inputs) (string, error) {
	conf, err := seedconf.Render(seedconf.Conf{
		Label: cfg.Label, Mode: seedconf.ModeInstall, Fault: cfg.Fault, PowerOff: cfg.PowerOff,
		Kernel: KernelPath, Initrd: InitrdPath,
	})
	if err != nil {
		return "", fmt.Errorf("armimage: %w", err)
	}
	var initrd bytes.Buffer
	entries := []cpioEntry{
		{name: "dev", mode: fs.ModeDir | 0o755},
		{name: "dev/console", mode: fs.ModeCharDevice | 0o600, major: 5, minor: 1},
		{name: "proc", mode: fs.ModeDir | 0o755},
		{name: "sys", mode: fs.ModeDir | 0o755},
		{name: "lib", mode: fs.ModeDir | 0o755},
		{name: "lib/modules", mode: fs.ModeDir | 0o755},
	}
	entries = append(entries, in.modules...)
	entries = append(entries, cpioEntry{name: "init", mode: 0o755, data: in.init})
	if err := writeCPIO(&initrd, entries); err != nil {
		return "", fmt.Errorf("armimage: %w", err)
	}

	// The files, in the order they go onto the vfat: the boot menu first,
	// so that its data is the first on the partition.
	files := []struct {
		dst  string
		data []byte
	}{
		{"/extlinux/extlinux.conf", conf},
		{KernelPath, in.kernel},
		{InitrdPath, initrd.Bytes()},
		{"/systems/" + cfg.Label + "/model", cfg.Model},
	}
	if name := gadgetName(cfg.Model); name != "" {
		snap := filepath.Join(work, "gadget.snap")
		if err := seedimage.GadgetSnap(ctx, snap, seedimage.Gadget{Name: name, Hooks: []string{"prepare-device"}, GadgetYAML: GadgetYAML()}); err != nil {
			return "", fmt.Errorf("armimage: the gadget snap: %w", err)
		}
		data, err := os.ReadFile(snap)
		if err != nil {
			return "", fmt.Errorf("armimage: %w", err)
		}
		files = append(files, struct {
			dst  string
			data []byte
		}{"/snaps/" + name + "_1.snap", data})
	}
	seed := filepath.Join(work, "seed.vfat")
	if err := createSized(seed, SeedSize); err != nil {
		return "", err
	}
	env := append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch), "MTOOLS_SKIP_CHECK=1", "TZ=UTC")
	if err := run(ctx, env, "mkfs.vfat", "--invariant", "-i", "5eed0001", "-n", "ubuntu-seed", seed); err != nil {
		return "", err
	}
	for i, f := range files {
		// mmd the missing parents, outermost first.
		var parents []string
		for dir := filepath.Dir(f.dst); dir != "/" && !madeBefore(files[:i], dir); dir = filepath.Dir(dir) {
			parents = append([]string{dir}, parents...)
		}
		for _, dir := range parents {
			if err := run(ctx, env, "mmd", "-i", seed, "::"+dir); err != nil {
				return "", err
			}
		}
		src := filepath.Join(work, fmt.Sprintf("file%d", i))
		if err := os.WriteFile(src, f.data, 0o644); err != nil {
			return "", fmt.Errorf("armimage: %w", err)
		}
		t := time.Unix(epoch, 0)
		if err := os.Chtimes(src, t, t); err != nil {
			return "", fmt.Errorf("armimage: %w", err)
		}
		if err := run(ctx, env, "mcopy", "-m", "-i", seed, src, "::"+f.dst); err != nil {
			return "", err
		}
	}

	disk := filepath.Join(work, "disk.img")
	if err := createSized(disk, DiskSize); err != nil {
		return "", err
	}
	if err := run(ctx, env, "sgdisk",
		"--disk-guid=5eed0000-f1a5-4a7e-9000-000000000001",
		fmt.Sprintf("--new=1:%d:+%dM", SeedOffset/512, SeedSize>>20),
		"--typecode=1:0700", "--change-name=1:ubuntu-seed",
		"--partition-guid=1:5eed0000-f1a5-4a7e-9000-000000000002",
		"--attributes=1:set:2", // legacy BIOS bootable: U-Boot's distro boot scans it
		disk); err != nil {
		return "", err
	}
	used, err := copyInto(disk, SeedOffset, seed)
	if err != nil {
		return "", err
	}
	if err := checkBootMenu(disk, conf); err != nil {
		return "", err
	}
	if err := writeBmap(disk, used); err != nil {
		return "", err
	}
	return disk, nil
}

// seedType is the ubuntu-seed partition's GPT type (sgdisk's 0700,
// Microsoft basic data, which U-Boot's distro boot scans).
const seedType = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"

// GadgetYAML is the gadget's meta/gadget.yaml: one volume whose
// ubuntu-seed structure is the disk's partition (offset, size, type,
// vfat, label), then the structures the install boot makes.
func GadgetYAML() []byte {
	return seedimage.GadgetYAML(seedimage.KindUC20, "gpt", "u-boot", []seedimage.Part{{
		Index: 1, Name: "ubuntu-seed", Role: "system-seed", Type: seedType, Filesystem: "vfat", Label: "ubuntu-seed",
		Offset: SeedOffset, Size: SeedSize,
	}})
}

// gadgetName is the gadget snap the model names ("" when it does not
// decode as a device model, or names none).
func gadgetName(model []byte) string {
	a, err := serialvault.Decode(model)
	if err != nil {
		return ""
	}
	m, err := serialvault.AsModel(a)
	if err != nil {
		return ""
	}
	name, _, _ := strings.Cut(m.Gadget, "=") // UC16/18: name=track
	return name
}

// writeBmap writes disk's block map beside it (disk + ".bmap"): the
// protective MBR, both GPT headers and their whole partition entry arrays
// (unused entries are zeros that must be written too), and the seed
// partition's used part (seedUsed bytes from its start, dense). Built from
// the layout, not from the file system's holes, so the same inputs give
// the same bmap on any file system.
func writeBmap(disk string, seedUsed int64) error {
	data, err := os.ReadFile(disk)
	if err != nil {
		return fmt.Errorf("armimage: %w", err)
	}
	size := int64(len(data))
	extents := [][2]int64{{0, 512}, {SeedOffset, seedUsed}}
	for _, hdr := range []int64{512, size - 512} {
		h := data[hdr : hdr+512]
		if string(h[:8]) != "EFI PART" {
			return fmt.Errorf("armimage: no GPT header at byte %d", hdr)
		}
		entries := int64(binary.LittleEndian.Uint64(h[72:])) * 512
		n, each := int64(binary.LittleEndian.Uint32(h[80:])), int64(binary.LittleEndian.Uint32(h[84:]))
		if n*each > 1<<20 || entries < 0 || entries+n*each > size {
			return fmt.Errorf("armimage: GPT header at byte %d: %d entries of %d bytes at %d do not fit", hdr, n, each, entries)
		}
		extents = append(extents, [2]int64{hdr, 512}, [2]int64{entries, n * each})
	}
	bm, err := flash.EncodeBmap(bytes.NewReader(data), size, bmapBlock, extents)
	if err != nil {
		return fmt.Errorf("armimage: %w", err)
	}
	if err := os.WriteFile(disk+".bmap", bm, 0o644); err != nil {
		return fmt.Errorf("armimage: %w", err)
	}
	return nil
}

// bmapBlock is the bmap's block size, bmaptool's default.
const bmapBlock = 4096

func madeBefore(files []struct {
	dst  string
	data []byte
}, dir string) bool {
	for _, f := range files {
		if strings.HasPrefix(f.dst, dir+"/") {
			return true
		}
	}
	return false
}

// checkBootMenu makes sure the board's init will find the boot menu: the
// first sector starting with its header is the menu built.
func checkBootMenu(disk string, conf []byte) error {
	f, err := os.Open(disk)
	if err != nil {
		return fmt.Errorf("armimage: %w", err)
	}
	defer f.Close()
	off, err := seedconf.Locate(io.NewSectionReader(f, SeedOffset, SeedSize), SeedSize)
	if err != nil {
		return fmt.Errorf("armimage: built image: %w", err)
	}
	got := make([]byte, len(conf))
	if _, err := f.ReadAt(got, SeedOffset+off); err != nil {
		return fmt.Errorf("armimage: built image: %w", err)
	}
	if !bytes.Equal(got, conf) {
		return fmt.Errorf("armimage: built image: the first boot menu header at %d is not the boot menu", SeedOffset+off)
	}
	return nil
}

func createSized(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("armimage: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("armimage: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("armimage: %w", err)
	}
	return nil
}

// copyInto writes src into dst at off up to src's last non-zero chunk,
// leaving a hole after it, and returns how many bytes it wrote. The part
// written is dense, zeros included: the seed's files and its FAT lie
// there, and a bmap must map every block of them.
func copyInto(dst string, off int64, src string) (int64, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return 0, fmt.Errorf("armimage: %w", err)
	}
	const chunk = 64 << 10
	used := int64(len(data))
	for used > 0 {
		start := (used - 1) / chunk * chunk
		if !allZero(data[start:used]) {
			break
		}
		used = start
	}
	out, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("armimage: %w", err)
	}
	if _, err := out.WriteAt(data[:used], off); err != nil {
		out.Close()
		return 0, fmt.Errorf("armimage: writing the seed partition: %w", err)
	}
	if err := out.Close(); err != nil {
		return 0, fmt.Errorf("armimage: %w", err)
	}
	return used, nil
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
		return fmt.Errorf("armimage: %s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// SetFault sets the fault a board acts out on a disk image (or a flashed
// disk file) in place, without rebuilding it.
func SetFault(disk, fault string) error {
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("armimage: setting the fault: %w", err)
	}
	part := &sectionRW{f: f, off: SeedOffset}
	if err := seedconf.Rewrite(part, SeedSize, seedconf.FaultField, fault); err != nil {
		f.Close()
		return fmt.Errorf("armimage: setting the fault on %s: %w", disk, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("armimage: setting the fault: %w", err)
	}
	return nil
}

// sectionRW reads and writes a file from an offset on.
type sectionRW struct {
	f   *os.File
	off int64
}

func (s *sectionRW) ReadAt(p []byte, off int64) (int, error)  { return s.f.ReadAt(p, s.off+off) }
func (s *sectionRW) WriteAt(p []byte, off int64) (int, error) { return s.f.WriteAt(p, s.off+off) }

// BuildInit builds the board program (cmd/flashstation-board of the
// module rooted at moduleDir) as a static armhf binary at out,
// reproducibly (no build id, paths or VCS stamp).
func BuildInit(ctx context.Context, moduleDir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", out, "./cmd/flashstation-board")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm", "GOARM=7")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("armimage: building the board's init: %w: %s", err, bytes.TrimSpace(b))
	}
	return nil
}

// ZeroKernel zeroes the kernel (its bytes, found on the seed partition)
// on a disk image or flashed disk file: what a board whose storage lost
// data after its flash boots. U-Boot then refuses it ("zimage: Bad
// magic!").
func ZeroKernel(disk string, kernel []byte) error {
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("armimage: zeroing the kernel: %w", err)
	}
	defer f.Close()
	seed := make([]byte, SeedSize)
	if _, err := f.ReadAt(seed, SeedOffset); err != nil {
		return fmt.Errorf("armimage: zeroing the kernel: %w", err)
	}
	at := bytes.Index(seed, kernel)
	if at < 0 {
		return fmt.Errorf("armimage: zeroing the kernel: %s holds no contiguous copy of it on its seed", disk)
	}
	if _, err := f.WriteAt(make([]byte, len(kernel)), int64(SeedOffset+at)); err != nil {
		return fmt.Errorf("armimage: zeroing the kernel: %w", err)
	}
	return f.Close()
}
