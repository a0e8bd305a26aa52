package armimage

import (
	"fmt"
	"os"
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
	// attached read-only.
	EEPROM string
	// MAC is the network card's address ("" is QEMU's default).
	MAC string
	// Proxy, when set, is the station's proxy on the host (e.g.
	// 127.0.0.1:41234): the guest reaches it at ProxyGuestAddr, and
	// nothing else, each guest connection relayed by a Forwarder process.
	Proxy string
	// Forwarder is the binary QEMU runs per guest connection to the
	// proxy; it must call ForwardMain first thing ("" is this process's
	// own executable).
	Forwarder string
	// HostFwd, when set, are user-network rules such as
	// "tcp:127.0.0.1:2222-:22".
	HostFwd []string
}

// Args is qemu-system-arm's command line for q (an error only when the
// forwarder's path cannot be found): the virt machine with
// 256 MiB, U-Boot as its firmware, the disk (and the EEPROM) on
// virtio-blk, the console on q.Serial, user networking cut off from the
// host and the outside (restrict=on: DHCP and TFTP from 10.0.2.2 still
// answer) but for one guestfwd to q.Proxy, no display and no monitor.
func (q QEMU) Args() ([]string, error) {
	netdev := "user,id=n,restrict=on"
	if q.Proxy != "" {
		exe := q.Forwarder
		if exe == "" {
			var err error
			if exe, err = os.Executable(); err != nil {
				return nil, fmt.Errorf("armimage: the proxy's forwarder: %w", err)
			}
		}
		netdev += fmt.Sprintf(",guestfwd=tcp:%s-cmd:%s", ProxyGuestAddr, forwardCmd(exe, q.Proxy))
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
	}
	// The virt machine gives the last virtio device on the command line
	// the first virtio-mmio slot, and U-Boot's distro boot tries only
	// virtio 0: the flashed disk comes after the EEPROM. (Linux may name
	// them either way; the board's init tells them apart by the EEPROM's
	// virtio-blk serial.)
	if q.EEPROM != "" {
		args = append(args,
			"-drive", "if=none,file="+q.EEPROM+",format=raw,readonly=on,id=e",
			"-device", "virtio-blk-device,drive=e,serial="+eeprom.DiskSerial)
	}
	args = append(args, "-drive", "if=none,file="+q.Disk+",format=raw,id=d", "-device", "virtio-blk-device,drive=d")
	return append(args, "-netdev", netdev, "-device", nic), nil
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
