package armimage

import (
	"fmt"
	"io"
	"io/fs"
	"path"
)

// cpioEntry is one member of an initramfs: a directory, a regular file or
// a character device.
type cpioEntry struct {
	name         string      // path without a leading slash
	mode         fs.FileMode // permission bits plus fs.ModeDir or fs.ModeCharDevice
	data         []byte      // regular files
	major, minor uint32      // character devices
}

// writeCPIO writes entries as a cpio archive in the "newc" format the
// kernel unpacks into its initramfs, with every time, owner and inode
// fixed so that the same entries give the same bytes.
func writeCPIO(w io.Writer, entries []cpioEntry) error {
	for i, e := range entries {
		if err := writeCPIOEntry(w, uint32(i+1), e); err != nil {
			return fmt.Errorf("initramfs: %s: %w", e.name, err)
		}
	}
	if err := writeCPIOEntry(w, 0, cpioEntry{name: "TRAILER!!!"}); err != nil {
		return fmt.Errorf("initramfs: trailer: %w", err)
	}
	return nil
}

func writeCPIOEntry(w io.Writer, ino uint32, e cpioEntry) error {
	const (
		sIFDIR = 0o040000
		sIFREG = 0o100000
		sIFCHR = 0o020000
	)
	mode := uint32(e.mode.Perm())
	nlink := uint32(1)
	switch {
	case e.name == "TRAILER!!!":
	case e.mode&fs.ModeDir != 0:
		mode |= sIFDIR
		nlink = 2
	case e.mode&fs.ModeCharDevice != 0:
		mode |= sIFCHR
	default:
		mode |= sIFREG
	}
	name := path.Clean(e.name) + "\x00"
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(name), 0)
	if _, err := io.WriteString(w, hdr+name+pad4(len(hdr)+len(name))); err != nil {
		return err
	}
	if len(e.data) == 0 {
		return nil
	}
	if _, err := w.Write(e.data); err != nil {
		return err
	}
	_, err := io.WriteString(w, pad4(len(e.data)))
	return err
}

func pad4(n int) string { return "\x00\x00\x00"[:(4-n%4)%4] }
