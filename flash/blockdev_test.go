package flash_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flashstation/flashstation/flash"
)

// loopDevice attaches a file of size bytes to a loop device, or skips when
// the test cannot (not root, no loop devices).
func loopDevice(t *testing.T, size int64) (dev, backing string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not installed")
	}
	backing = filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(backing)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	out, err := exec.Command("losetup", "--find", "--show", "--direct-io=on", backing).CombinedOutput()
	if err != nil {
		out, err = exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	}
	if err != nil {
		t.Skipf("no loop device: %v %s", err, out)
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev, backing
}

func TestLoopDevice(t *testing.T) {
	dev, backing := loopDevice(t, 32<<20)
	raw, content := sharedImage(t)
	img := prepare(t, newCache(t), flash.ImageSpec{Path: raw})

	_, err := flash.OpenBlockTarget(dev, flash.BlockOptions{})
	if f, ok := err.(*flash.Failure); !ok || f.Reason != flash.ReasonNotUSB {
		t.Fatalf("a loop device without --allow-non-usb: %v", err)
	}
	bt, err := flash.OpenBlockTarget(dev, flash.BlockOptions{AllowNonUSB: true})
	if err != nil {
		t.Fatal(err)
	}
	if bt.Capacity() != 32<<20 || bt.Align() < 512 {
		t.Errorf("capacity %d align %d", bt.Capacity(), bt.Align())
	}
	// O_EXCL: a second open is refused as busy.
	if _, err := flash.OpenBlockTarget(dev, flash.BlockOptions{AllowNonUSB: true}); err == nil || err.(*flash.Failure).Reason != flash.ReasonBusy {
		t.Errorf("second exclusive open: %v", err)
	}
	res := flash.Write(context.Background(), img, bt, flash.Options{Verify: true})
	bt.Close()
	if res.Failure != nil || !res.Verified {
		t.Fatalf("%+v", res)
	}
	got, _ := os.ReadFile(backing)
	if i := firstDiff(got[:imageSize], content); i >= 0 {
		t.Errorf("loop device differs at %d", i)
	}

	small, _ := loopDevice(t, 8<<20)
	st, err := flash.OpenBlockTarget(small, flash.BlockOptions{AllowNonUSB: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if r := flash.Write(context.Background(), img, st, flash.Options{}); r.Failure == nil || r.Failure.Reason != flash.ReasonTooSmall {
		t.Errorf("small disk: %+v", r.Failure)
	}
}

func TestMountedAndSystemDisksRefused(t *testing.T) {
	// The disk holding / is never opened, whatever the options.
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err == nil {
		sys, err := filepath.EvalSymlinks(filepath.Join("/sys/dev/block", fmtDev(st.Dev)))
		if err == nil {
			disk := sys
			if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
				disk = filepath.Dir(sys)
			}
			devPath := "/dev/" + filepath.Base(disk)
			if _, err := os.Stat(devPath); err == nil {
				_, err := flash.OpenBlockTarget(devPath, flash.BlockOptions{AllowNonUSB: true})
				f, ok := err.(*flash.Failure)
				if !ok || (f.Reason != flash.ReasonSystemDisk && f.Reason != flash.ReasonMounted) {
					t.Errorf("system disk %s: %v", devPath, err)
				}
			}
		}
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	dev, _ := loopDevice(t, 16<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Skipf("mkfs: %v %s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	_, err := flash.OpenBlockTarget(dev, flash.BlockOptions{AllowNonUSB: true})
	if f, ok := err.(*flash.Failure); !ok || f.Reason != flash.ReasonMounted || !strings.Contains(f.Detail, mnt) {
		t.Errorf("mounted disk: %v", err)
	}
}

func fmtDev(dev uint64) string {
	return fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
}

func TestFileTargetErrors(t *testing.T) {
	if _, err := flash.OpenFileTarget(t.TempDir()); err == nil {
		t.Error("a directory accepted as a file target")
	}
	path := filepath.Join(t.TempDir(), "t.img")
	ft, err := flash.OpenFileTarget(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ft.Close()
	if ft.Gone() {
		t.Error("a fresh file is gone")
	}
	os.Remove(path)
	if !ft.Gone() {
		t.Error("a removed file is not gone")
	}
	if _, err := flash.InspectDisk("/dev/null"); err == nil {
		t.Error("a character device accepted as a disk")
	}
}
