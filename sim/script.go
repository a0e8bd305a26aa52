package sim

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/flashstation/flashstation/internal/getty"
)

// step is one piece of a boot as the console shows it: a pause (in board
// time, divided by the speed factor when played) then text.
type step struct {
	pause time.Duration
	text  string
	stage string // the stage this text starts, for hang faults
}

// bootScript builds a first boot's console output.
type bootScript struct {
	steps []step
	rng   *rand.Rand
	clock float64 // kernel timestamp, seconds
	// label is the recovery system the kernel command line names: the
	// seed on the board's disk ("" on UC16/18 or a disk without one).
	label string
}

func (b *bootScript) add(pause time.Duration, text string) {
	b.steps = append(b.steps, step{pause: pause, text: text})
}

func (b *bootScript) stage(name string) {
	b.steps = append(b.steps, step{stage: name})
}

func (b *bootScript) kernel(format string, args ...any) {
	b.clock += 0.0001 + b.rng.Float64()*0.05
	b.add(0, fmt.Sprintf("[%5d.%06d] ", int(b.clock), int((b.clock-float64(int(b.clock)))*1e6))+fmt.Sprintf(format, args...)+"\r\n")
}

func ok(what string) string { return "[\x1b[0;32m  OK  \x1b[0m] " + what + "\r\n" }

func (b *bootScript) uboot() {
	b.stage("bootloader")
	b.add(200*time.Millisecond, "\r\nU-Boot 2023.01+dfsg-1ubuntu0.22.04 (Feb 10 2024 - 10:21:52 +0000)\r\n\r\n")
	b.add(0, "DRAM:  948 MiB\r\nRPI 3 Model B (0xa02082)\r\nMMC:   mmc@7e202000: 0, sdhci@7e300000: 1\r\n")
	b.add(0, "Loading Environment from FAT... OK\r\nIn:    serial\r\nOut:   serial\r\nErr:   serial\r\nNet:   No ethernet found.\r\n")
	b.add(0, "Hit any key to stop autoboot:  2 ")
	b.add(time.Second, "\b\b\b 1 ")
	b.add(time.Second, "\b\b\b 0 \r\n")
	b.add(0, "switch to partitions #0, OK\r\nmmc0 is current device\r\nScanning mmc 0:1...\r\nFound U-Boot script /boot.scr\r\n")
	b.add(300*time.Millisecond, "9046528 bytes read in 702 ms (12.3 MiB/s)\r\n17438512 bytes read in 1349 ms (12.3 MiB/s)\r\n")
	b.add(200*time.Millisecond, "\r\nStarting kernel ...\r\n\r\n")
}

func (b *bootScript) kernelBoot(mode string) {
	b.clock = 0
	b.stage("kernel")
	b.kernel("Booting Linux on physical CPU 0x0")
	b.kernel("Linux version 5.15.0-1049-raspi (buildd@bos03-armhf-007) (gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0) #52-Ubuntu SMP PREEMPT")
	b.kernel("CPU: ARMv7 Processor [410fd034] revision 4 (ARMv7), cr=10c5383d")
	b.kernel("OF: fdt: Machine model: Raspberry Pi 3 Model B Rev 1.2")
	system := ""
	if b.label != "" {
		system = " snapd_recovery_system=" + b.label
	}
	b.kernel("Kernel command line: coherent_pool=1M 8250.nr_uarts=1 console=ttyS0,115200 dwc_otg.lpm_enable=0 snapd_recovery_mode=%s%s", mode, system)
	b.kernel("Memory: 673648K/970752K available")
	b.kernel("smp: Brought up 1 node, 4 CPUs")
	b.kernel("printk: console [ttyS0] enabled")
	b.kernel("mmc0: new high speed SDHC card at address aaaa")
	b.kernel("mmcblk0: mmc0:aaaa SC32G 29.7 GiB")
	b.kernel("Run /init as init process")
	b.add(500*time.Millisecond, ok("Reached target Local File Systems (Pre)."))
	b.add(0, ok("Started Journal Service."))
	b.add(400*time.Millisecond, "\r\nWelcome to Ubuntu Core 22!\r\n\r\n")
	b.add(0, ok("Created slice system-serial\\x2dgetty.slice."))
	b.add(200*time.Millisecond, ok("Reached target Network."))
	b.add(0, "         Starting Start the snapd services from the snapd snap...\r\n")
}

// panicBoot is what a board shows when its storage does not hold a
// bootable system.
func (b *bootScript) panicBoot() {
	b.kernel("VFS: Cannot open root device \"mmcblk0p2\" or unknown-block(179,2): error -6")
	b.kernel("Please append a correct \"root=\" boot option; here are the available partitions:")
	b.kernel("b300        31166976 mmcblk0")
	b.kernel("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(179,2)")
	b.kernel("CPU: 0 PID: 1 Comm: swapper/0 Not tainted 5.15.0-1049-raspi #52-Ubuntu")
	b.kernel("Hardware name: BCM2835")
	b.kernel("[<80112a64>] (unwind_backtrace) from [<8010c5ac>] (show_stack+0x10/0x14)")
	b.kernel("---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(179,2) ]---")
}

func (b *bootScript) installBoot() {
	b.stage("install-boot")
	b.add(300*time.Millisecond, ok("Started Ubuntu Core Firstboot Configuration ttyS0."))
	b.add(200*time.Millisecond, "Installing the system, please wait for reboot\r\n")
	b.add(time.Second, "Feb 10 10:03:10 ubuntu snapd[598]: daemon.go:343: started snapd/2.61.1 (series 16) ubuntu-core/22 (armhf)\r\n")
	b.add(10*time.Second, "Feb 10 10:03:24 ubuntu snapd[598]: handlers_install.go:204: create and deploy partitions\r\n")
	for i, part := range []string{"ubuntu-boot", "ubuntu-save", "ubuntu-data"} {
		b.add(2*time.Second, fmt.Sprintf("[%5d.%06d]  mmcblk0: p1 p%d\r\n", 27+i, 338102+i*1000, i+2))
		b.add(0, fmt.Sprintf("Feb 10 10:03:2%d ubuntu snapd[598]: install.go:216: created new partition /dev/mmcblk0p%d for structure #%d (%q) with role system-%s\r\n", 7+i, i+2, i+1, part, strings.TrimPrefix(part, "ubuntu-")))
	}
	b.add(60*time.Second, "Feb 10 10:04:51 ubuntu snapd[598]: handlers_install.go:251: make system runnable\r\n")
	b.add(40*time.Second, "Feb 10 10:05:37 ubuntu snapd[598]: handlers_install.go:321: request immediate system reboot\r\n")
	b.add(time.Second, ok("Stopped target Network.")+ok("Reached target Shutdown.")+"         Starting Reboot...\r\n")
	b.add(500*time.Millisecond, "[  171.522840] reboot: Restarting system\r\n")
}

func (b *bootScript) seeding(snaps []string) {
	b.stage("seeding")
	for _, s := range snaps {
		for _, what := range []string{"Ensure prerequisites for %q are available", "Mount snap %q (%d)", "Setup snap %q (%d) security profiles"} {
			text := fmt.Sprintf(what, s, 100+b.rng.IntN(900))
			if !strings.Contains(what, "%d") {
				text = fmt.Sprintf(what, s)
			}
			line := text + strings.Repeat(" ", max(0, 78-len(text)))
			for i, spin := range []string{"/", "-", "\\", "|", "/", "-"} {
				pause := 100 * time.Millisecond
				if i == 0 {
					pause = 2 * time.Second
				}
				b.add(pause, "\r"+line+spin)
			}
		}
	}
	b.add(3*time.Second, "\r"+strings.Repeat(" ", 80)+"\r")
	b.add(0, "Mark system seeded\r\n")
	b.add(500*time.Millisecond, ok("Started Wait until snapd is fully seeded."))
	b.add(200*time.Millisecond, ok("Reached target Multi-User System."))
}

// seedError is snapd failing to seed: a seed snap that will not mount.
func (b *bootScript) seedError(snaps []string) {
	b.stage("seeding")
	snap := "core22"
	if len(snaps) > 1 {
		snap = snaps[1]
	}
	rev := 100 + b.rng.IntN(900)
	b.add(2*time.Second, fmt.Sprintf("Mount snap %q (%d)\r\n", snap, rev))
	b.add(time.Second, fmt.Sprintf("Feb 10 10:06:12 ubuntu snapd[612]: daemon.go:255: cannot run snapd from the seed: cannot mount snap %q: squashfs: invalid superblock\r\n", snap))
	b.add(0, "error: cannot perform the following tasks:\r\n")
	b.add(0, fmt.Sprintf("- Mount snap %q (%d) (squashfs: invalid superblock)\r\n", snap, rev))
}

func (b *bootScript) ready(login bool, ip string) {
	b.stage("console-ready")
	if !login {
		b.add(time.Second, "Press enter to configure.\r\n")
		return
	}
	b.add(time.Second, getty.Banner(ip, "ttyS0"))
}

// firstBoot writes the whole console output of a first boot for a
// profile ("uc20"-style: install then run boot; "uc16": one boot).
func firstBoot(profile, label string, good, login bool, ip string, snaps []string, f Faults, seed uint64) []step {
	b := &bootScript{rng: rand.New(rand.NewPCG(seed, 42)), label: label}
	uc16 := profile == "uc16" || profile == "uc18"
	if !good {
		b.uboot()
		b.kernelBoot("install")
		b.panicBoot()
		return b.steps
	}
	if f.KernelPanic {
		b.uboot()
		b.kernelBoot("install")
		b.kernel("Unable to handle kernel NULL pointer dereference at virtual address 00000000")
		b.kernel("Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b")
		b.kernel("---[ end Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b ]---")
		return b.steps
	}
	b.uboot()
	if uc16 {
		b.kernelBoot("run")
		if f.SeedError {
			b.seedError(snaps)
			return b.steps
		}
		b.seeding(snaps)
		b.ready(login, ip)
		return b.steps
	}
	b.kernelBoot("install")
	b.installBoot()
	if f.BootLoop {
		for range 3 { // the install never completes: it starts over
			b.uboot()
			b.kernelBoot("install")
			b.installBoot()
		}
		return b.steps
	}
	b.stage("run-boot")
	b.uboot()
	b.kernelBoot("run")
	if f.SeedError {
		b.seedError(snaps)
		return b.steps
	}
	b.seeding(snaps)
	b.ready(login, ip)
	return b.steps
}

// garbage is what a console shows at the wrong baud rate.
func garbage(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(0x80 | rng.IntN(128))
		if rng.IntN(40) == 0 {
			out[i] = '\n'
		}
	}
	return out
}
