package seedconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRenderAndRewriteInPlace(t *testing.T) {
	conf, err := Render(Conf{Label: "20240210", Mode: ModeInstall, Fault: FaultNone, Kernel: "/kernel.img", Initrd: "/initrd.img"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "append console=ttyAMA0 snapd_recovery_mode=install snapd_recovery_system=20240210 flashstation.fault=none       flashstation.poweroff=0\n") {
		t.Fatalf("append line:\n%s", conf)
	}
	// On a disk: the conf at a sector past some other data.
	disk := make([]byte, 64*SectorSize)
	copy(disk[5*SectorSize+7:], Header) // not at a sector start: ignored
	copy(disk[9*SectorSize:], conf)
	path := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(path, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if off, err := Locate(f, 1<<20); err != nil || off != 9*SectorSize {
		t.Fatalf("Locate = %d, %v; want %d", off, err, 9*SectorSize)
	}
	if err := Rewrite(f, 1<<20, ModeField, ModeRun); err != nil {
		t.Fatal(err)
	}
	if err := Rewrite(f, 1<<20, FaultField, FaultSeedError); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	after := got[9*SectorSize : 9*SectorSize+len(conf)]
	if len(got) != len(disk) {
		t.Fatalf("disk grew to %d bytes", len(got))
	}
	for field, want := range map[string]string{ModeField: ModeRun, FaultField: FaultSeedError} {
		if v, err := Field(after, field); err != nil || v != want {
			t.Errorf("%s = %q, %v; want %q", field, v, err, want)
		}
	}
	if !strings.Contains(string(after), "snapd_recovery_mode=run     snapd_recovery_system=20240210 flashstation.fault=seed-error flashstation.poweroff=0\n") {
		t.Errorf("rewritten:\n%s", after)
	}
	if err := Rewrite(f, 1<<20, FaultField, "melt"); err == nil {
		t.Error("an unknown fault was written")
	}
}

func TestLocateFailsOnAnotherDisk(t *testing.T) {
	if _, err := Locate(strings.NewReader(strings.Repeat("x", 4096)), 1<<20); err == nil {
		t.Fatal("found a boot menu on a disk without one")
	}
}
