package armimage

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/flashstation/flashstation/internal/armimage/eeprom"
)

// UBootQEMUArm is where Debian's u-boot-qemu puts U-Boot for
// qemu-system-arm's virt machine.
const UBootQEMUArm = "/usr/lib/u-boot/qemu_arm/u-boot.bin"

// QEMU is how a board's QEMU runs.
type QEMU struct {
	UBoot  string // U-Boot binary, the machine's -bios (UBootQEMUArm)
	Disk   string // raw disk image, the board's virtio disk (the flashed file)
	Serial string // a terminal's path (a pty's slave) the PL011 console is connected to
	// EEPROM, when set, is the board's identity disk (see WithIdentity),
	// attached read-only after Disk.
	EEPROM string
	// MAC is the network card's address ("" is QEMU's default).
	MAC string
	// Proxy, when set, is the station's proxy on the host (e.g.
	// 127.0.0.1:41234): the guest reaches it at ProxyGuestAddr, and
	// nothing else.
	Proxy string
	// HostFwd, when set, are user-network rules such as
	// "tcp:127.0.0.1:2222-:22".
	HostFwd []string
}

// Args is qemu-system-arm's command line for q: the virt machine with
// 256 MiB, U-Boot as its firmware, the disk (and the EEPROM) on
// virtio-blk, the console on q.Serial, user networking cut off from the
// host and the outside (restrict=on: DHCP and TFTP from 10.0.2.2 still
// answer) but for one guestfwd to q.Proxy, no display and no monitor.
func (q QEMU) Args() []string {
	netdev := "user,id=n,restrict=on"
	if q.Proxy != "" {
		netdev += fmt.Sprintf(",guestfwd=tcp:%s-tcp:%s", ProxyGuestAddr, q.Proxy)
	}
	for _, f := range q.HostFwd {
		netdev += ",hostfwd=" + f
	}
	nic := "virtio-net-device,netdev=n"
	if q.MAC != "" {
		nic += ",mac=" + q.MAC
	}
	args := []string{
		"-M", "virt", "-m", "256", "-smp", "1",
		"-display", "none", "-monitor", "none",
		"-chardev", "serial,id=con0,path=" + q.Serial, "-serial", "chardev:con0",
		"-bios", q.UBoot,
		"-drive", "if=none,file=" + q.Disk + ",format=raw,id=d", "-device", "virtio-blk-device,drive=d",
	}
	if q.EEPROM != "" {
		args = append(args,
			"-drive", "if=none,file="+q.EEPROM+",format=raw,readonly=on,id=e",
			"-device", "virtio-blk-device,drive=e,serial="+eeprom.DiskSerial)
	}
	return append(args, "-netdev", netdev, "-device", nic)
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
