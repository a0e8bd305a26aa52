package flash

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/flashstation/flashstation/usb"
)

// sysRoot and procMounts are where the kernel's views live (tests point
// them at fixtures).
var (
	sysRoot    = "/sys"
	procMounts = "/proc/self/mountinfo"
)

// Disk describes a whole-disk block device and whether it is safe to
// overwrite.
type Disk struct {
	Path    string // as given
	Device  string // resolved /dev path
	Name    string // kernel name, e.g. sdb
	Major   uint32
	Minor   uint32
	Size    int64
	USBPort string   // USB port path when the disk is on USB, e.g. 1-1.4.2
	Mounts  []string // mount points of the disk or its partitions
	Holders []string // device-mapper, md... using it
	System  bool     // holds /, /boot, /usr, /var or swap
	Model   string
	Vendor  string
	Serial  string
}

// InspectDisk looks a block device up in sysfs and the mount table.
func InspectDisk(path string) (*Disk, error) {
	dev, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, fmt.Errorf("%s is not a block device", path)
	}
	d := &Disk{Path: path, Device: dev, Major: unix.Major(uint64(st.Rdev)), Minor: unix.Minor(uint64(st.Rdev))}
	sys, err := filepath.EvalSymlinks(filepath.Join(sysRoot, "dev", "block", fmt.Sprintf("%d:%d", d.Major, d.Minor)))
	if err != nil {
		return nil, fmt.Errorf("%s: no sysfs entry: %w", path, err)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		return nil, fmt.Errorf("%s is a partition: give the whole disk", path)
	}
	d.Name = filepath.Base(sys)
	if n, err := readInt(filepath.Join(sys, "size")); err == nil {
		d.Size = n * 512
	}
	d.USBPort = usb.PortOf(sys)
	d.Model = readTrim(filepath.Join(sys, "device", "model"))
	d.Vendor = readTrim(filepath.Join(sys, "device", "vendor"))
	d.Serial = usbSerialOf(sys)

	// The disk and its partitions, by major:minor.
	devs := map[string]bool{fmt.Sprintf("%d:%d", d.Major, d.Minor): true}
	entries, _ := os.ReadDir(sys)
	for _, e := range entries {
		if dv := readTrim(filepath.Join(sys, e.Name(), "dev")); dv != "" && e.IsDir() {
			if _, err := os.Stat(filepath.Join(sys, e.Name(), "partition")); err == nil {
				devs[dv] = true
				d.Holders = append(d.Holders, holders(filepath.Join(sys, e.Name()))...)
			}
		}
	}
	d.Holders = append(d.Holders, holders(sys)...)
	mounts, err := readMountInfo()
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		if devs[m.dev] {
			d.Mounts = append(d.Mounts, m.point)
			switch m.point {
			case "/", "/boot", "/boot/efi", "/usr", "/var":
				d.System = true
			}
		}
	}
	if swaps, err := os.ReadFile("/proc/swaps"); err == nil {
		for _, line := range strings.Split(string(swaps), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 0 && strings.HasPrefix(f[0], "/dev/") {
				var sst unix.Stat_t
				if unix.Stat(f[0], &sst) == nil && devs[fmt.Sprintf("%d:%d", unix.Major(uint64(sst.Rdev)), unix.Minor(uint64(sst.Rdev)))] {
					d.System = true
				}
			}
		}
	}
	return d, nil
}

func holders(sysDir string) []string {
	entries, _ := os.ReadDir(filepath.Join(sysDir, "holders"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// usbSerialOf reads the serial string of the USB device a block device
// sits on.
func usbSerialOf(sysPath string) string {
	parts := strings.Split(sysPath, "/")
	for i := len(parts) - 1; i > 0; i-- {
		if usb.ValidPortPath(parts[i]) {
			return readTrim(filepath.Join(strings.Join(parts[:i+1], "/"), "serial"))
		}
	}
	return ""
}

type mountEntry struct{ dev, point string }

func readMountInfo() ([]mountEntry, error) {
	f, err := os.Open(procMounts)
	if err != nil {
		return nil, fmt.Errorf("mount table: %w", err)
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 {
			out = append(out, mountEntry{dev: fields[2], point: unescapeMount(fields[4])})
		}
	}
	return out, sc.Err()
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readInt(path string) (int64, error) {
	return strconv.ParseInt(readTrim(path), 10, 64)
}

// BlockOptions are the safety settings for opening a disk.
type BlockOptions struct {
	// AllowNonUSB permits a disk that is not on a USB port (a loop device
	// in a lab). The system disk and mounted disks are refused anyway.
	AllowNonUSB bool
	// USBPorts, when set, are the slot's port paths: the disk must be on
	// one of them.
	USBPorts []string
}

// BlockTarget is a whole-disk block device opened for direct,
// exclusive I/O.
type BlockTarget struct {
	f     *os.File
	disk  *Disk
	align int
	sys   string
}

// OpenBlockTarget checks that a disk is safe to overwrite and opens it
// with O_DIRECT|O_EXCL. Refusals are Failures with reasons no-device
// (missing, or not a block device), mounted, system-disk, busy, not-usb or
// open-error.
func OpenBlockTarget(path string, o BlockOptions) (*BlockTarget, error) {
	_, resolved, exists, err := resolvePath(path)
	if err != nil {
		return nil, &Failure{Reason: ReasonOpen, Offset: -1, Detail: err.Error(), Err: err}
	}
	if err := checkDevNode(path, resolved, exists); err != nil {
		return nil, err
	}
	d, err := InspectDisk(path)
	if err != nil {
		return nil, &Failure{Reason: ReasonOpen, Offset: -1, Detail: err.Error(), Err: err}
	}
	switch {
	case d.System:
		return nil, &Failure{Reason: ReasonSystemDisk, Offset: -1, Detail: fmt.Sprintf("%s holds the system (%s): never overwritten", path, strings.Join(d.Mounts, ", "))}
	case len(d.Mounts) > 0:
		return nil, &Failure{Reason: ReasonMounted, Offset: -1, Detail: fmt.Sprintf("%s is mounted at %s: unmount it first", path, strings.Join(d.Mounts, ", "))}
	case len(d.Holders) > 0:
		return nil, &Failure{Reason: ReasonBusy, Offset: -1, Detail: fmt.Sprintf("%s is in use by %s", path, strings.Join(d.Holders, ", "))}
	case d.USBPort == "" && !o.AllowNonUSB:
		return nil, &Failure{Reason: ReasonNotUSB, Offset: -1, Detail: fmt.Sprintf("%s (%s) is not on a USB port; --allow-non-usb permits it", path, d.Name)}
	case len(o.USBPorts) > 0 && !containsString(o.USBPorts, d.USBPort):
		return nil, &Failure{Reason: ReasonNotUSB, Offset: -1, Detail: fmt.Sprintf("%s is on USB port %q, not the slot's %s", path, d.USBPort, strings.Join(o.USBPorts, " or "))}
	}
	f, err := os.OpenFile(d.Device, os.O_RDWR|unix.O_DIRECT|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, &Failure{Reason: ReasonBusy, Offset: -1, Detail: fmt.Sprintf("%s is busy (open elsewhere)", path), Err: err}
		}
		return nil, &Failure{Reason: ReasonOpen, Offset: -1, Detail: err.Error(), Err: err}
	}
	t := &BlockTarget{f: f, disk: d, align: 4096, sys: filepath.Join(sysRoot, "dev", "block", fmt.Sprintf("%d:%d", d.Major, d.Minor))}
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno == 0 {
		d.Size = int64(size)
	}
	if ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET); err == nil && ss > 0 {
		t.align = max(ss, 512)
	}
	return t, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Disk returns what was found about the disk.
func (t *BlockTarget) Disk() *Disk                              { return t.disk }
func (t *BlockTarget) Name() string                             { return t.disk.Path }
func (t *BlockTarget) Capacity() int64                          { return t.disk.Size }
func (t *BlockTarget) Align() int                               { return t.align }
func (t *BlockTarget) WriteAt(p []byte, off int64) (int, error) { return t.f.WriteAt(p, off) }
func (t *BlockTarget) ReadAt(p []byte, off int64) (int, error)  { return t.f.ReadAt(p, off) }
func (t *BlockTarget) Sync() error                              { return t.f.Sync() }
func (t *BlockTarget) Close() error                             { return t.f.Close() }

// DropCache is a no-op: direct I/O bypasses the page cache.
func (t *BlockTarget) DropCache() error { return nil }

// Gone reports whether the disk left sysfs (unplugged).
func (t *BlockTarget) Gone() bool {
	_, err := os.Stat(t.sys)
	return err != nil
}
