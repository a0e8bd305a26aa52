//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFATReadsWhatMtoolsWrote writes files with mtools onto FAT12, FAT16
// and FAT32 file systems made by mkfs.vfat, and reads them back.
func TestFATReadsWhatMtoolsWrote(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "mcopy", "mmd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing (dosfstools, mtools; make deps installs them)", tool)
		}
	}
	model := bytes.Repeat([]byte("type: model\nbrand-id: acme\n"), 300) // several clusters
	for _, tc := range []struct {
		name string
		size int64
		args []string
	}{
		{"fat12", 4 << 20, []string{"-F", "12"}},
		{"fat16", 48 << 20, nil}, // the image's seed
		{"fat32", 64 << 20, []string{"-F", "32"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "fs.img")
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			if err := errors.Join(f.Truncate(tc.size), f.Close()); err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(dir, "model")
			if err := os.WriteFile(src, model, 0o644); err != nil {
				t.Fatal(err)
			}
			long := filepath.Join(dir, "long")
			if err := os.WriteFile(long, []byte("long name\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			env := append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
			for _, args := range [][]string{
				append(append([]string{"mkfs.vfat"}, tc.args...), "-n", "ubuntu-seed", img),
				{"mmd", "-i", img, "::/systems"},
				{"mmd", "-i", img, "::/systems/20240210"},
				{"mcopy", "-i", img, src, "::/systems/20240210/model"},
				{"mcopy", "-i", img, long, "::/systems/a-rather-long-file-name.txt"},
			} {
				cmd := exec.Command(args[0], args[1:]...)
				cmd.Env = env
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%v: %v: %s", args, err, out)
				}
			}
			r, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			fs, err := openFAT(r)
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimPrefix(tc.name, "fat"); want != fmt.Sprint(fs.bits) {
				t.Errorf("read as FAT%d", fs.bits)
			}
			got, err := fs.readFile("systems/20240210/model", 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, model) {
				t.Errorf("model: %d bytes, want %d", len(got), len(model))
			}
			if got, err := fs.readFile("/systems/a-rather-long-file-name.txt", 1<<20); err != nil || string(got) != "long name\n" {
				t.Errorf("long name: %q, %v", got, err)
			}
			if _, err := fs.readFile("systems/20240211/model", 1<<20); err == nil {
				t.Error("read a file that is not there")
			}
			if _, err := fs.readFile("systems/20240210/model", 100); err == nil {
				t.Error("read more than max")
			}
		})
	}
}
