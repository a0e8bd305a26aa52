package flash_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/flash"
)

// devName returns a /dev path no one else uses, removed when the test ends.
func devName(t *testing.T, what string) string {
	t.Helper()
	p := fmt.Sprintf("/dev/flashstation-test-%s-%d-%d", what, os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { os.RemoveAll(p) })
	return p
}

// needDevWrite skips a case that must make a node in /dev (root only).
func needDevWrite(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making entries in /dev needs root")
	}
}

// TestTargetsMustBeBlockDevicesInDev: a target in /dev, or leading there
// through symbolic links, that is missing or not a block device is
// refused with no-device by CheckTarget, OpenJob (the command line's and
// the station pipeline's way in), OpenFileTarget and OpenBlockTarget, and
// nothing is created or changed. A missing file outside /dev is still made
// (lab files).
func TestTargetsMustBeBlockDevicesInDev(t *testing.T) {
	type setup struct {
		spec string
		// absent must not exist afterwards; file must keep its content.
		absent, file string
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) setup
		want  string // reason; "" accepted
		// detail is in the failure's text.
		detail string
	}{
		{"missing in /dev", func(t *testing.T) setup {
			p := devName(t, "missing")
			return setup{spec: p, absent: p}
		}, flash.ReasonNoDevice, "does not exist"},
		{"missing in /dev, relative form", func(t *testing.T) setup {
			p := devName(t, "missing")
			return setup{spec: "/dev/../dev/./" + filepath.Base(p), absent: p}
		}, flash.ReasonNoDevice, "does not exist"},
		{"regular file in /dev", func(t *testing.T) setup {
			needDevWrite(t)
			p := devName(t, "file")
			if err := os.WriteFile(p, []byte("left by an earlier run"), 0o644); err != nil {
				t.Fatal(err)
			}
			return setup{spec: p, file: p}
		}, flash.ReasonNoDevice, "a regular file, not a block device"},
		{"character device", func(t *testing.T) setup {
			return setup{spec: "/dev/null"}
		}, flash.ReasonNoDevice, "a character device"},
		{"directory in /dev", func(t *testing.T) setup {
			needDevWrite(t)
			p := devName(t, "dir")
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			return setup{spec: p, absent: filepath.Join(p, "x")}
		}, flash.ReasonNoDevice, "a directory"},
		{"/dev link to a character device", func(t *testing.T) setup {
			needDevWrite(t)
			p := devName(t, "link")
			if err := os.Symlink("/dev/null", p); err != nil {
				t.Fatal(err)
			}
			return setup{spec: p}
		}, flash.ReasonNoDevice, "-> /dev/null) is a character device"},
		{"/dev link to a regular file elsewhere", func(t *testing.T) setup {
			needDevWrite(t)
			f := filepath.Join(t.TempDir(), "lab.img")
			if err := os.WriteFile(f, []byte("lab"), 0o644); err != nil {
				t.Fatal(err)
			}
			p := devName(t, "link")
			if err := os.Symlink(f, p); err != nil {
				t.Fatal(err)
			}
			return setup{spec: p, file: f}
		}, flash.ReasonNoDevice, "a regular file"},
		{"dangling /dev link (by-path of an unplugged board)", func(t *testing.T) setup {
			needDevWrite(t)
			gone := devName(t, "gone")
			p := devName(t, "link")
			if err := os.Symlink("../"+filepath.Base(gone), p); err != nil {
				t.Fatal(err)
			}
			return setup{spec: p, absent: gone}
		}, flash.ReasonNoDevice, "does not exist"},
		{"link elsewhere to a missing /dev node", func(t *testing.T) setup {
			gone := devName(t, "gone")
			p := filepath.Join(t.TempDir(), "board.img")
			if err := os.Symlink(gone, p); err != nil {
				t.Fatal(err)
			}
			return setup{spec: p, absent: gone}
		}, flash.ReasonNoDevice, "does not exist"},
		{"directory elsewhere linking into /dev", func(t *testing.T) setup {
			d := filepath.Join(t.TempDir(), "devlink")
			if err := os.Symlink("/dev", d); err != nil {
				t.Fatal(err)
			}
			gone := devName(t, "gone")
			return setup{spec: filepath.Join(d, filepath.Base(gone)), absent: gone}
		}, flash.ReasonNoDevice, "does not exist"},
		{"malformed fastboot", func(t *testing.T) setup {
			return setup{spec: "fastboot:serial:x"}
		}, flash.ReasonOpen, "want fastboot:tcp:HOST:PORT"},
		{"missing lab file elsewhere is created", func(t *testing.T) setup {
			return setup{spec: filepath.Join(t.TempDir(), "new.img")}
		}, "", ""},
		{"/dev link to a block device", func(t *testing.T) setup {
			needDevWrite(t)
			dev, _ := loopDevice(t, 8<<20)
			p := devName(t, "by-path")
			if err := os.Symlink(dev, p); err != nil {
				t.Fatal(err)
			}
			return setup{spec: p}
		}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.setup(t)
			var before []byte
			if s.file != "" {
				before = fileBytes(t, s.file)
			}
			check := func(op string, err error) {
				t.Helper()
				if tc.want == "" {
					if err != nil {
						t.Errorf("%s: %v, want it accepted", op, err)
					}
					return
				}
				var f *flash.Failure
				if !errors.As(err, &f) || f.Reason != tc.want || !strings.Contains(f.Error(), tc.detail) {
					t.Errorf("%s(%s) = %v, want reason %s with %q", op, s.spec, err, tc.want, tc.detail)
				}
			}
			check("CheckTarget", flash.CheckTarget(s.spec))
			job, err := flash.OpenJob(context.Background(), s.spec, flash.TargetOptions{Block: flash.BlockOptions{AllowNonUSB: true}})
			check("OpenJob", err)
			if job != nil {
				job.Close()
			}
			if tc.want == flash.ReasonNoDevice {
				ft, err := flash.OpenFileTarget(s.spec)
				check("OpenFileTarget", err)
				if ft != nil {
					ft.Close()
				}
				bt, err := flash.OpenBlockTarget(s.spec, flash.BlockOptions{AllowNonUSB: true})
				check("OpenBlockTarget", err)
				if bt != nil {
					bt.Close()
				}
				if err != nil && !strings.Contains(err.Error(), "flashstation devices") {
					t.Errorf("the refusal does not tell the operator what to do: %v", err)
				}
			}
			if s.absent != "" {
				if _, err := os.Lstat(s.absent); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s was created (%v)", s.absent, err)
				}
			}
			if s.file != "" {
				if after := fileBytes(t, s.file); string(after) != string(before) {
					t.Errorf("%s changed: %q", s.file, after)
				}
			}
			if tc.want == "" && !strings.HasPrefix(s.spec, "/dev/") {
				if fi, err := os.Stat(s.spec); err != nil || !fi.Mode().IsRegular() {
					t.Errorf("lab file %s not created: %v", s.spec, err)
				}
			}
		})
	}
}
