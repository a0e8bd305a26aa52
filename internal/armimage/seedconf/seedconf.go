// Package seedconf is the boot menu the armhf QEMU board's ubuntu-seed
// partition holds: the extlinux/extlinux.conf U-Boot's distro boot finds,
// with the kernel command line's mutable fields at fixed widths so that
// they can be rewritten in place on the raw disk, without a vfat driver.
//
// Two parties rewrite them: the board's init, which turns
// snapd_recovery_mode=install into run at the end of the install boot
// (U-Boot then passes the run mode on the next boot, as snapd's bootloader
// environment does on a real board), and the bench, which sets
// flashstation.fault per board on the flashed disk file. Both find the
// file by its header, which starts a sector (FAT allocates whole
// clusters, and a file's data starts a cluster).
package seedconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Header is the first line of the file; Locate looks for it at the start
// of a sector.
const Header = "# flashstation ubuntu-seed boot menu v1\n"

// The rewritable fields of the kernel command line and their value
// widths (values are padded with spaces to the width).
const (
	ModeField  = "snapd_recovery_mode"
	FaultField = "flashstation.fault"
	modeWidth  = len("install")
	faultWidth = len("seed-error")
)

// Modes and faults the board knows.
const (
	ModeInstall = "install"
	ModeRun     = "run"

	FaultNone      = "none"
	FaultPanic     = "panic"      // the kernel panics in the install boot
	FaultBootLoop  = "boot-loop"  // the install boot never completes and starts over
	FaultSeedError = "seed-error" // the run boot fails to seed
)

// SectorSize is the unit Locate scans in.
const SectorSize = 512

// Conf is what the menu says.
type Conf struct {
	Label    string // the recovery system, as in systems/<label>/
	Mode     string // ModeInstall or ModeRun
	Fault    string // a Fault* value
	PowerOff bool   // the board powers off once its console is ready (tests)
	Kernel   string // path of the kernel on the partition, e.g. /kernel.img
	Initrd   string // path of the initramfs on the partition
}

// Render writes the extlinux.conf for c.
func Render(c Conf) ([]byte, error) {
	if len(c.Mode) > modeWidth || c.Mode == "" {
		return nil, fmt.Errorf("seedconf: mode %q: want install or run", c.Mode)
	}
	if !validFault(c.Fault) {
		return nil, fmt.Errorf("seedconf: unknown fault %q", c.Fault)
	}
	if c.Label == "" || strings.ContainsAny(c.Label, " \t\n") {
		return nil, fmt.Errorf("seedconf: recovery system label %q: want one word", c.Label)
	}
	poweroff := "0"
	if c.PowerOff {
		poweroff = "1"
	}
	var b bytes.Buffer
	b.WriteString(Header)
	b.WriteString("# Two values below are fixed-width and rewritten in place on the disk.\n")
	b.WriteString("default ubuntu-core\n")
	b.WriteString("label ubuntu-core\n")
	fmt.Fprintf(&b, "\tkernel %s\n", c.Kernel)
	fmt.Fprintf(&b, "\tinitrd %s\n", c.Initrd)
	fmt.Fprintf(&b, "\tappend console=ttyAMA0 %s=%-*s snapd_recovery_system=%s %s=%-*s flashstation.poweroff=%s\n",
		ModeField, modeWidth, c.Mode, c.Label, FaultField, faultWidth, c.Fault, poweroff)
	return b.Bytes(), nil
}

func validFault(f string) bool {
	switch f {
	case FaultNone, FaultPanic, FaultBootLoop, FaultSeedError:
		return true
	}
	return false
}

// fieldSpan finds the value of field on the append line of a rendered
// conf: its offset and width.
func fieldSpan(conf []byte, field string) (int, int, error) {
	width := modeWidth
	if field == FaultField {
		width = faultWidth
	} else if field != ModeField {
		return 0, 0, fmt.Errorf("seedconf: %s is not a rewritable field", field)
	}
	if !bytes.HasPrefix(conf, []byte(Header)) {
		return 0, 0, errors.New("seedconf: not a flashstation boot menu (header missing)")
	}
	key := []byte(" " + field + "=")
	i := bytes.Index(conf, key)
	if i < 0 {
		return 0, 0, fmt.Errorf("seedconf: no %s on the append line", field)
	}
	start := i + len(key)
	if start+width > len(conf) {
		return 0, 0, fmt.Errorf("seedconf: %s value cut short", field)
	}
	return start, width, nil
}

// Field reads a field's value (unpadded) from a rendered conf.
func Field(conf []byte, field string) (string, error) {
	start, width, err := fieldSpan(conf, field)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(conf[start:start+width]), " "), nil
}

// SetField rewrites a field's value in a rendered conf in place.
func SetField(conf []byte, field, value string) error {
	start, width, err := fieldSpan(conf, field)
	if err != nil {
		return err
	}
	switch field {
	case ModeField:
		if value != ModeInstall && value != ModeRun {
			return fmt.Errorf("seedconf: mode %q: want install or run", value)
		}
	case FaultField:
		if !validFault(value) {
			return fmt.Errorf("seedconf: unknown fault %q", value)
		}
	}
	copy(conf[start:start+width], fmt.Sprintf("%-*s", width, value))
	return nil
}

// Locate finds the conf on a raw partition or disk: the offset of the
// first sector, among the first limit bytes, that starts with Header.
func Locate(r io.ReaderAt, limit int64) (int64, error) {
	const chunk = 128 * SectorSize
	buf := make([]byte, chunk)
	for off := int64(0); off < limit; off += chunk {
		n, err := r.ReadAt(buf, off)
		for s := 0; s+len(Header) <= n; s += SectorSize {
			if bytes.HasPrefix(buf[s:], []byte(Header)) {
				return off + int64(s), nil
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("seedconf: scanning for the boot menu at %d: %w", off, err)
		}
	}
	return 0, errors.New("seedconf: no flashstation boot menu on the disk")
}

// Size bounds a rendered conf: reading this many bytes at Locate's offset
// holds the whole file.
const Size = 1024

// Rewrite sets a field of the conf found on rw (a disk, a partition, or a
// disk image file) in place.
func Rewrite(rw interface {
	io.ReaderAt
	io.WriterAt
}, limit int64, field, value string) error {
	off, err := Locate(rw, limit)
	if err != nil {
		return err
	}
	buf := make([]byte, Size)
	n, err := rw.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		return fmt.Errorf("seedconf: reading the boot menu at %d: %w", off, err)
	}
	buf = buf[:n]
	if err := SetField(buf, field, value); err != nil {
		return err
	}
	start, width, _ := fieldSpan(buf, field) // SetField found it
	if _, err := rw.WriteAt(buf[start:start+width], off+int64(start)); err != nil {
		return fmt.Errorf("seedconf: writing the boot menu at %d: %w", off, err)
	}
	return nil
}
