// Package disktest gives tests real storage faults: a small tmpfs mounted
// on a directory (root only; the test is skipped otherwise), filled to the
// last byte, or remounted read-only.
package disktest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Tmpfs mounts a tmpfs of size (e.g. "8m") on dir, creating it, and
// unmounts it when the test ends. Without root, or where mounting is not
// allowed, the test is skipped.
func Tmpfs(t testing.TB, dir, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// Fill writes a file in dir until the file system is full, checks that
// nothing more fits, and returns a func that frees the room again.
func Fill(t testing.TB, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "disktest-filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for n := len(buf); n > 0; {
		if _, err := f.Write(buf[:n]); err != nil {
			n /= 2 // the last blocks, smaller and smaller
		}
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, "disktest-probe"), buf[:4096], 0o600); err == nil {
		t.Fatal("disktest: the disk is not full")
	}
	return func() { os.Remove(path) }
}

// ReadOnly remounts the tmpfs on dir read-only and checks nothing can be
// created there.
func ReadOnly(t testing.TB, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v %s", err, out)
	}
	if f, err := os.Create(filepath.Join(dir, "disktest-probe")); err == nil {
		f.Close()
		t.Fatal("disktest: the file system is still writable")
	}
}
