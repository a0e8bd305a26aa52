package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/sim"
)

func newSimCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulated boards for labs and tests",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSimBoardCommand(stdout, stderr))
	return cmd
}

func newSimBoardCommand(stdout, stderr io.Writer) *cobra.Command {
	var o struct {
		serial, fastboot, disk, consoleLink, profile, image, model, service, loginUser, loginPasswordFile, hangAt string
		headers                                                                                                   []string
		diskSize                                                                                                  int64
		speed, slow                                                                                               float64
		keyBits                                                                                                   int
		unplugAfter, writeErrorAt                                                                                 int64
		panic, bootLoop, seedError, garbage, neverRegisters, vaultRefuses                                         bool
	}
	cmd := &cobra.Command{
		Use:   "board --serial S (--fastboot-tcp ADDR | --disk FILE) [--console-link PATH] ...",
		Short: "Run one simulated board: storage, a console on a pty, a first boot, a registration",
		Long: `Run one simulated board until interrupted. Its storage is FILE (written by the
station as a disk) or a fastboot device on ADDR (Debian's fastboot and the
station talk to it). Its console is a pseudo-terminal, linked at
--console-link. It boots on fastboot reboot, on Ctrl-C then "reset" typed on
its console, or on SIGUSR1 (a power cycle); with --image it checks that its
storage holds that image and otherwise plays a failing boot. Once booted it
registers with --device-service like snapd (nothing on the console), and
with --login-user it has a factory login on its console.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.serial == "" || (o.fastboot == "") == (o.disk == "") {
				return usageErrorf("--serial and exactly one of --fastboot-tcp or --disk are required")
			}
			ctx := cmd.Context()
			cfg := sim.BoardConfig{
				Serial: o.serial, Mode: sim.ModeUMS, Storage: o.disk, DiskSize: o.diskSize, ConsoleLink: o.consoleLink,
				Profile: o.profile, Speed: o.speed, DeviceService: o.service, KeyBits: o.keyBits, LoginUser: o.loginUser,
				Faults: sim.Faults{UnplugAfter: o.unplugAfter, SlowMBps: o.slow, WriteErrorAt: o.writeErrorAt, KernelPanic: o.panic,
					HangAt: o.hangAt, BootLoop: o.bootLoop, SeedError: o.seedError, Garbage: o.garbage, NeverRegisters: o.neverRegisters, VaultRefuses: o.vaultRefuses},
			}
			if o.fastboot != "" {
				cfg.Mode, cfg.FastbootAddr = sim.ModeFastboot, o.fastboot
				dir, err := os.MkdirTemp("", "flashstation-sim-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				cfg.Storage = filepath.Join(dir, "emmc.img")
			} else if o.unplugAfter > 0 || o.slow > 0 || o.writeErrorAt > 0 {
				fmt.Fprintln(stderr, "sim: disk faults (unplug, slow, write error) apply to fastboot boards and in-process benches only")
			}
			if len(o.headers) > 0 {
				cfg.Headers = map[string]string{}
				for _, h := range o.headers {
					k, v, ok := strings.Cut(h, "=")
					if !ok {
						return usageErrorf("--header %q: want NAME=VALUE", h)
					}
					cfg.Headers[k] = v
				}
			}
			if o.loginPasswordFile != "" {
				b, err := os.ReadFile(o.loginPasswordFile)
				if err != nil {
					return usageErrorf("--login-password-file: %v", err)
				}
				cfg.LoginPassword = strings.TrimSpace(string(b))
			}
			if o.model != "" {
				data, err := os.ReadFile(o.model)
				if err != nil {
					return usageErrorf("--model: %v", err)
				}
				if cfg.Model, err = serialvault.Decode(data); err != nil {
					return usageErrorf("--model: %v", err)
				}
			}
			if o.image != "" {
				dir, err := os.MkdirTemp("", "flashstation-sim-cache-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				c, err := flash.NewCache(dir)
				if err != nil {
					return err
				}
				if cfg.Expect, err = c.Prepare(ctx, flash.ImageSpec{Path: o.image}, nil); err != nil {
					return usageErrorf("--image: %v", err)
				}
			}
			b, err := sim.NewBoard(cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			if err := b.Start(ctx); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "board %s (%s) console %s\n", o.serial, cfg.Mode, b.ConsolePath())
			if addr := b.FastbootAddr(); addr != "" {
				fmt.Fprintf(stdout, "fastboot tcp:%s\n", addr)
			}
			fmt.Fprintf(stdout, "faults: %s\n", cfg.Faults)
			usr1 := make(chan os.Signal, 1)
			signal.Notify(usr1, syscall.SIGUSR1)
			defer signal.Stop(usr1)
			last := ""
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-usr1:
					fmt.Fprintln(stderr, "sim: power cycle")
					b.PowerCycle()
				case <-tick.C:
					if s := b.State(); s != last {
						fmt.Fprintf(stderr, "sim: board %s %s\n", o.serial, s)
						last = s
					}
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.serial, "serial", "", "hardware serial")
	f.StringVar(&o.fastboot, "fastboot-tcp", "", "run a fastboot device on ADDR (e.g. 127.0.0.1:5554)")
	f.StringVar(&o.disk, "disk", "", "the board's eMMC as a disk file (UMS mode)")
	f.Int64Var(&o.diskSize, "disk-size", 256<<20, "size of a new disk")
	f.StringVar(&o.consoleLink, "console-link", "", "symlink to the console pty")
	f.StringVar(&o.profile, "profile", "uc20", "first boot: uc20 (install then run boot) or uc16")
	f.Float64Var(&o.speed, "speed", 1, "boot speed factor (1: real time)")
	f.StringVar(&o.image, "image", "", "the image the board expects (otherwise any written storage boots)")
	f.StringVar(&o.model, "model", "", "model assertion for the registration")
	f.StringVar(&o.service, "device-service", "", "device-service.url (the station's proxy or a vault)")
	f.StringArrayVar(&o.headers, "header", nil, "device-service header NAME=VALUE (repeatable)")
	f.IntVar(&o.keyBits, "key-bits", 4096, "device key size")
	f.StringVar(&o.loginUser, "login-user", "", "factory user on the console")
	f.StringVar(&o.loginPasswordFile, "login-password-file", "", "that user's password")
	f.Int64Var(&o.unplugAfter, "unplug-after", 0, "fault: pulled out after N bytes written")
	f.Float64Var(&o.slow, "slow", 0, "fault: a slow medium, MB/s")
	f.Int64Var(&o.writeErrorAt, "write-error-at", 0, "fault: writes reaching this offset fail")
	f.BoolVar(&o.panic, "kernel-panic", false, "fault: the kernel panics")
	f.StringVar(&o.hangAt, "hang-at", "", "fault: the console stops at this stage")
	f.BoolVar(&o.bootLoop, "boot-loop", false, "fault: the install boot starts over")
	f.BoolVar(&o.seedError, "seed-error", false, "fault: snapd cannot mount a seed snap on the run boot")
	f.BoolVar(&o.garbage, "garbage", false, "fault: the console runs at another baud rate")
	f.BoolVar(&o.neverRegisters, "never-registers", false, "fault: snapd never registers")
	f.BoolVar(&o.vaultRefuses, "vault-refuses", false, "fault: the vault refuses the registration")
	return cmd
}
