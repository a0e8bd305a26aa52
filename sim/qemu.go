package sim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/creack/pty"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/flashstation/flashstation/internal/armimage"
	"github.com/flashstation/flashstation/internal/armimage/seedconf"
	"github.com/flashstation/flashstation/serialvault"
)

// QEMUAssets is what a bench of QEMU boards needs: Debian's
// qemu-system-arm and U-Boot for its virt machine, Debian's armhf kernel
// (scripts/qemu-kernel.sh), and the board program built for armhf.
type QEMUAssets struct {
	QEMU      string // qemu-system-arm
	UBoot     string // armimage.UBootQEMUArm
	KernelDir string // vmlinuz and modules/, from scripts/qemu-kernel.sh
	Init      string // cmd/flashstation-board built for armhf (armimage.BuildInit)
	CacheDir  string // built images, by their inputs' hash
	// Forwarder is the binary QEMU runs for each of a guest's connections
	// to its device service (armimage.ForwardMain; "": this program).
	Forwarder string
}

// FindQEMUAssets finds the QEMU bench's assets on this machine and builds
// the board program from the module at moduleDir (the flashstation source
// tree) into the cache. Its error says what is missing and how to get it.
func FindQEMUAssets(ctx context.Context, moduleDir string) (QEMUAssets, error) {
	var a QEMUAssets
	var err error
	if a.QEMU, err = exec.LookPath("qemu-system-arm"); err != nil {
		return a, errors.New("sim: no qemu-system-arm: install Debian's qemu-system-arm (make deps)")
	}
	a.UBoot = armimage.UBootQEMUArm
	if _, err := os.Stat(a.UBoot); err != nil {
		return a, fmt.Errorf("sim: no U-Boot for QEMU's virt machine at %s: install Debian's u-boot-qemu (make deps)", a.UBoot)
	}
	if a.KernelDir, err = armimage.KernelAssets(); err != nil {
		return a, err
	}
	if _, err := os.Stat(filepath.Join(a.KernelDir, "vmlinuz")); err != nil {
		return a, fmt.Errorf("sim: no armhf kernel in %s: run make qemu-assets (scripts/qemu-kernel.sh)", a.KernelDir)
	}
	a.CacheDir = filepath.Join(filepath.Dir(filepath.Dir(a.KernelDir)), "images")
	a.Init = filepath.Join(filepath.Dir(filepath.Dir(a.KernelDir)), "flashstation-board")
	// Built beside and renamed into place: another process (a test
	// package, a demo) may be building or reading it at the same time.
	tmp := fmt.Sprintf("%s.%d.tmp", a.Init, os.Getpid())
	if err := armimage.BuildInit(ctx, moduleDir, tmp); err != nil {
		os.Remove(tmp)
		return a, fmt.Errorf("sim: %w", err)
	}
	if err := os.Rename(tmp, a.Init); err != nil {
		return a, fmt.Errorf("sim: %w", err)
	}
	return a, nil
}

// qemuFault is the fault a QEMU board acts out for the board's faults:
// the guest's own (a real kernel panic, a reboot loop, a seeding error).
func qemuFault(f Faults) string {
	switch {
	case f.KernelPanic:
		return seedconf.FaultPanic
	case f.BootLoop:
		return seedconf.FaultBootLoop
	case f.SeedError:
		return seedconf.FaultSeedError
	}
	return seedconf.FaultNone
}

// qemuReady is the guest's console-ready prompt: the board is booted.
var qemuReady = regexp.MustCompile(`Press enter to configure\.|login: ?$`)

// qemuConsole is a QEMU board's side of the console: a pseudo-terminal
// whose slave QEMU opens at each boot, and whose master the board copies
// to and from the station's console for the board's lifetime.
type qemuConsole struct {
	master, slave *os.File
}

func newQEMUConsole() (*qemuConsole, error) {
	m, s, err := openPTY()
	if err != nil {
		return nil, fmt.Errorf("sim: QEMU console pty: %w", err)
	}
	// Raw until QEMU opens it (QEMU makes it raw too): no echo of what
	// the station types before the guest runs, no line discipline.
	if err := makeRaw(s); err != nil {
		m.Close()
		s.Close()
		return nil, fmt.Errorf("sim: QEMU console pty: %w", err)
	}
	return &qemuConsole{master: m, slave: s}, nil
}

// makeRaw puts a terminal in raw mode (cfmakeraw).
func makeRaw(f *os.File) error {
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
}

func (q *qemuConsole) Close() {
	q.master.Close()
	q.slave.Close()
}

// relayQEMU copies what the guest prints to the station's console until
// the board closes, and marks the board booted at the guest's ready
// prompt.
func (b *Board) relayQEMU() {
	defer b.wg.Done()
	r := bufio.NewReader(b.qemu.master)
	var line []byte
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			b.consoleMu.Lock()
			_, werr := b.master.Write(buf[:n])
			b.consoleMu.Unlock()
			if werr != nil {
				return
			}
			ready := false
			for _, c := range buf[:n] {
				if c == '\n' {
					ready = ready || qemuReady.Match(bytes.TrimRight(line, "\r "))
					line = line[:0]
					continue
				}
				if len(line) < 512 {
					line = append(line, c)
				}
			}
			// A prompt waits without a newline.
			ready = ready || qemuReady.Match(bytes.TrimRight(line, "\r "))
			if ready && b.State() == StateBooting {
				b.qemuBooted()
			}
		}
		if err != nil {
			if b.ctx != nil && b.ctx.Err() != nil {
				return
			}
			// No QEMU holds the slave between boots: wait for the next.
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// qemuBooted is the guest at its ready prompt: the board is booted and
// shows on the bus as the booted system does.
func (b *Board) qemuBooted() {
	b.setState(StateBooted)
	b.show()
	b.mu.Lock()
	booted := b.booted
	b.mu.Unlock()
	select {
	case <-booted:
	default:
		close(booted)
	}
}

// playQEMU is a QEMU board's boot: qemu-system-arm with the board's
// storage as its disk, until the boot is stopped (power off, the board
// back in its flash mode) or the guest powers off.
func (b *Board) playQEMU() {
	defer b.wg.Done()
	ctx := b.bootContext()
	q := b.cfg.QEMU
	if err := armimage.SetFault(b.cfg.Storage, qemuFault(b.cfg.Faults)); err != nil {
		// No boot menu on the disk: U-Boot finds nothing to boot, as on
		// a board whose flash is corrupt. Let it say so.
		b.cfg.Logger.Debug().Err(err).Str("board", b.cfg.Serial).Msg("sim qemu board: no boot menu to set the fault on")
	}
	args, err := b.qemuArgs()
	if err != nil {
		b.cfg.Logger.Error().Err(err).Str("board", b.cfg.Serial).Msg("sim qemu board")
		b.setState(StateFailed)
		return
	}
	if b.cfg.QEMUArgs != nil {
		extra, err := b.cfg.QEMUArgs(b)
		if err != nil {
			b.cfg.Logger.Error().Err(err).Str("board", b.cfg.Serial).Msg("sim qemu board")
			b.setState(StateFailed)
			return
		}
		args = append(args, extra...)
	}
	cmd := exec.CommandContext(ctx, q.QEMU, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		b.cfg.Logger.Error().Err(err).Str("board", b.cfg.Serial).Msg("sim qemu board: qemu-system-arm")
		b.setState(StateFailed)
		return
	}
	err = cmd.Wait()
	if ctx.Err() == nil {
		// The guest powered off, or QEMU failed.
		if err != nil {
			b.cfg.Logger.Error().Err(err).Str("board", b.cfg.Serial).Str("stderr", stderr.String()).Msg("sim qemu board: qemu-system-arm ended")
		}
		b.mu.Lock()
		if b.state == StateBooting || b.state == StateBooted {
			b.state = StateOff
		}
		b.mu.Unlock()
		b.show()
	}
}

// qemuLabel is the recovery system's label on the QEMU bench's image.
const qemuLabel = "20260901"

// writeQEMUImage builds the QEMU bench's image (a real armhf Ubuntu Core
// 20+ seed with the bench's model, internal/armimage; cached by its
// inputs) and writes it, zstd-compressed, where the station's lines take
// their image, unless the same image is already there.
// qemuBmap is the QEMU image's block map in the bench's directory.
const qemuBmap = "image.bmap"

func (b *Bench) writeQEMUImage(ctx context.Context, path string) error {
	model, err := os.ReadFile(filepath.Join(b.Dir, "model.assert"))
	if err != nil {
		return err
	}
	q := b.cfg.QEMU
	img, err := armimage.Build(ctx, armimage.Config{KernelDir: q.KernelDir, Init: q.Init, Model: model, Label: qemuLabel, CacheDir: q.CacheDir})
	if err != nil {
		return fmt.Errorf("sim: the QEMU bench's image: %w", err)
	}
	stamp := filepath.Join(b.Dir, "image.inputs")
	if old, err := os.ReadFile(stamp); err == nil && string(old) == img.Hash {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
	}
	bm, err := os.ReadFile(img.Bmap)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.Dir, qemuBmap), bm, 0o644); err != nil {
		return err
	}
	raw, err := os.ReadFile(img.Path)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	w, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return err
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(stamp, []byte(img.Hash), 0o644)
}

// corruptStorage damages what the board boots (Faults.CorruptAfterFlash):
// a QEMU board's kernel on its seed is zeroed, a simulated board's first
// mapped chunk of its image loses its first block.
func (b *Board) corruptStorage() error {
	if b.cfg.QEMU != nil {
		kernel, err := os.ReadFile(filepath.Join(b.cfg.QEMU.KernelDir, "vmlinuz"))
		if err != nil {
			return err
		}
		return armimage.ZeroKernel(b.cfg.Storage, kernel)
	}
	f, err := os.OpenFile(b.cfg.Storage, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	off, n := int64(0), int64(4096)
	if b.cfg.Expect != nil && len(b.cfg.Expect.Chunks) > 0 {
		c := b.cfg.Expect.Chunks[0]
		off, n = c.Offset, min(n, c.Length)
	}
	_, err = f.WriteAt(make([]byte, n), off)
	return err
}

// qemuArgs is the board's QEMU command line: its storage as the disk, its
// console, and its identity on an EEPROM disk (hardware serial, device
// key, the device service and the factory user, as the board's snapd and
// gadget would have them) with the one network path to the device
// service: the line's recording proxy, or the vault.
func (b *Board) qemuArgs() ([]string, error) {
	q := armimage.QEMU{UBoot: b.cfg.QEMU.UBoot, Disk: b.cfg.Storage, Serial: b.qemu.slave.Name()}
	if b.cfg.DeviceService == "" {
		return q.Args()
	}
	key := b.cfg.Key
	if key == nil {
		// Made on the host: under QEMU's software emulation the guest
		// would take minutes (snapd makes it on the board).
		var err error
		if key, err = serialvault.GenerateKey(b.cfg.KeyBits); err != nil {
			return nil, err
		}
		b.cfg.Key = key
	}
	guestURL, hostAddr, err := armimage.GuestServiceURL(b.cfg.DeviceService)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(filepath.Dir(b.cfg.Storage), "qemu-"+b.cfg.Serial)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	q, err = q.WithIdentity(dir, armimage.Identity{Serial: b.cfg.Serial, Key: key, DeviceService: guestURL, Headers: b.cfg.Headers,
		ConsoleUser: b.cfg.LoginUser, ConsolePassword: b.cfg.LoginPassword})
	if err != nil {
		return nil, err
	}
	q.Proxy, q.Forwarder = hostAddr, b.cfg.QEMU.Forwarder
	return q.Args()
}

// openPTY opens a pseudo-terminal whose master end is non-blocking, read
// through the runtime's poller: closing it ends a Read blocked on it,
// whoever else holds the slave end (pty.Open's master is left blocking by
// its ioctls, and a blocking read would outlive Close).
func openPTY() (master, slave *os.File, err error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, nil, err
	}
	fd, err := unix.Dup(int(m.Fd()))
	m.Close()
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		s.Close()
		return nil, nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), s, nil
}
