package armimage

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// UBootQEMUArm is where Debian's u-boot-qemu puts U-Boot for
// qemu-system-arm's virt machine.
const UBootQEMUArm = "/usr/lib/u-boot/qemu_arm/u-boot.bin"

// QEMU is how a board's QEMU runs.
type QEMU struct {
	UBoot  string // U-Boot binary, the machine's -bios (UBootQEMUArm)
	Disk   string // raw disk image, the board's virtio disk (the flashed file)
	Serial string // a terminal's path (a pty's slave) the PL011 console is connected to
	// HostFwd, when set, are user-network rules such as
	// "tcp:127.0.0.1:2222-:22"; the guest reaches the host as 10.0.2.2.
	HostFwd []string
}

// Args is qemu-system-arm's command line for q: the virt machine with
// 256 MiB, U-Boot as its firmware, the disk on virtio-blk, the console on
// q.Serial, user networking cut off from outside (DHCP and the host at
// 10.0.2.2 still answer), no display and no monitor.
func (q QEMU) Args() []string {
	netdev := "user,id=n,restrict=on"
	for _, f := range q.HostFwd {
		netdev += ",hostfwd=" + f
	}
	return []string{
		"-M", "virt", "-m", "256", "-smp", "1",
		"-display", "none", "-monitor", "none",
		"-chardev", "serial,id=con0,path=" + q.Serial, "-serial", "chardev:con0",
		"-bios", q.UBoot,
		"-drive", "if=none,file=" + q.Disk + ",format=raw,id=d", "-device", "virtio-blk-device,drive=d",
		"-netdev", netdev, "-device", "virtio-net-device,netdev=n",
	}
}

// KernelAssets is where scripts/qemu-kernel.sh leaves the current kernel
// by default: $(go env GOCACHE)/flashstation-qemu/kernel/current.
func KernelAssets() (string, error) {
	out, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("armimage: go env GOCACHE: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "flashstation-qemu", "kernel", "current"), nil
}
