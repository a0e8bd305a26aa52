package sim

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/flash/fastboottest"
	"github.com/flashstation/flashstation/internal/getty"
	"github.com/flashstation/flashstation/seed"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
	"github.com/flashstation/flashstation/usb"
)

// Mode is how a board's storage shows on USB before its first boot.
type Mode string

// Storage modes.
const (
	ModeUMS      Mode = "ums"      // U-Boot `ums 0 mmc 0`: a USB disk
	ModeFastboot Mode = "fastboot" // U-Boot `fastboot`: here over TCP
)

// Board states.
const (
	StateFlashMode = "flash-mode" // waiting to be written (ums or fastboot)
	StateBooting   = "booting"
	StateBooted    = "booted"    // console ready
	StateFailed    = "failed"    // a failing boot was played
	StateUnplugged = "unplugged" // pulled out (a fault or the operator)
	StateOff       = "off"
)

// Faults make a board misbehave the way real ones do.
type Faults struct {
	UnplugAfter    int64   // pulled out after this many bytes were written
	SlowMBps       float64 // a slow medium
	WriteErrorAt   int64   // a bad block: writes reaching this offset fail
	KernelPanic    bool    // the kernel panics on first boot
	HangAt         string  // the console stops at this stage (e.g. seeding)
	BootLoop       bool    // the install boot starts over and over
	SeedError      bool    // snapd cannot mount a seed snap on the run boot
	Garbage        bool    // the console runs at another baud rate
	NeverRegisters bool    // snapd never registers
	VaultRefuses   bool    // the vault refuses every registration
	// HoldRegistration, when set, keeps snapd from registering until it
	// is closed (tests act while a board waits to register).
	HoldRegistration <-chan struct{}
	// KeepsPower: the board's hub port ignores its power switch (a ganged
	// hub, or a board powered from elsewhere): a power cut changes nothing,
	// the board stays on the bus and does not reboot.
	KeepsPower bool
	// StaysOff: the board does not come back after a power cut (a dead
	// regulator): no device on the bus, a silent console.
	StaysOff bool
	// CorruptAfterFlash: the storage loses data after the station has
	// written and verified it (a failing eMMC): the boot finds a damaged
	// kernel, and a QEMU board's real U-Boot refuses it.
	CorruptAfterFlash bool
	// OtherSeed: the board boots another recovery system than the one
	// written (a stale SD card it boots before the eMMC): its kernel
	// command line names this label.
	OtherSeed string
}

// failsBoot: the first boot ends in a failure the console shows.
func (f Faults) failsBoot() bool { return f.KernelPanic || f.BootLoop || f.SeedError }

// String lists the faults, for logs and the demo.
func (f Faults) String() string {
	var out []string
	add := func(on bool, s string) {
		if on {
			out = append(out, s)
		}
	}
	add(f.UnplugAfter > 0, fmt.Sprintf("unplug after %d bytes", f.UnplugAfter))
	add(f.SlowMBps > 0, fmt.Sprintf("slow medium %.0f MB/s", f.SlowMBps))
	add(f.WriteErrorAt > 0, fmt.Sprintf("write error at %d", f.WriteErrorAt))
	add(f.KernelPanic, "kernel panic")
	add(f.HangAt != "", "hang at "+f.HangAt)
	add(f.BootLoop, "boot loop")
	add(f.SeedError, "seed error")
	add(f.Garbage, "baud garbage")
	add(f.NeverRegisters, "never registers")
	add(f.VaultRefuses, "vault refuses")
	add(f.HoldRegistration != nil, "registration held")
	add(f.KeepsPower, "keeps power")
	add(f.StaysOff, "stays off")
	add(f.CorruptAfterFlash, "storage corrupted after the flash")
	add(f.OtherSeed != "", "boots another recovery system ("+f.OtherSeed+")")
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// Presence is where a board shows on USB: usbtest.Bus is one, and what the
// station polls.
type Presence interface {
	Plug(usb.Device)
	Unplug(portPath string)
}

// BoardConfig describes a simulated board.
type BoardConfig struct {
	Serial   string // the hardware serial (USB serial string, fastboot serialno)
	Mode     Mode
	Storage  string // the eMMC: a file, created with DiskSize bytes when missing
	DiskSize int64
	// FastbootAddr is where fastboot listens (default 127.0.0.1:0).
	FastbootAddr string
	// ConsoleLink, when set, is a symlink to the console's pty.
	ConsoleLink string
	Port        string   // USB port path it shows on
	Presence    Presence // nil: it shows nowhere
	Profile     string   // uc20 (default) or uc16
	// Speed divides every pause of the boot (1: real time at 115200 baud).
	Speed float64
	// Expect is the image the board expects to boot (nil: any written
	// storage boots).
	Expect *flash.Prepared
	Model  *serialvault.Assertion
	// DeviceService is the gadget's device-service.url and Headers its
	// device-service.headers.
	DeviceService string
	Headers       map[string]string
	// Key is the device key; nil generates one of KeyBits (default 4096)
	// on first boot, as snapd does.
	Key     *serialvault.PrivateKey
	KeyBits int
	// LoginUser and LoginPassword make a factory user; without one the
	// console shows console-conf.
	LoginUser, LoginPassword string
	Faults                   Faults
	Logger                   zerolog.Logger
	// QEMU, when set, makes a QEMU board: its flash mode is simulated
	// (a UMS disk or fastboot onto Storage, as other boards), but its
	// boots are real: qemu-system-arm's armhf virt machine with Debian's
	// U-Boot boots Storage, the station watching its console. Power off
	// ends QEMU, power on starts it again. QEMUArgs adds to QEMU's command
	// line (the board's identity, its network).
	QEMU     *QEMUAssets
	QEMUArgs func(*Board) ([]string, error)
}

// Board is a simulated board: storage, a console on a pseudo-terminal, a
// first boot and a registration with the device service.
type Board struct {
	cfg BoardConfig

	master, slave *os.File
	fb            *fastboottest.Device
	qemu          *qemuConsole // a QEMU board's side of the console

	mu         sync.Mutex
	state      string
	written    atomic.Int64
	gone       atomic.Bool
	booted     chan struct{}
	serial     *serialvault.Serial
	regErr     error
	registered chan struct{}
	cancel     context.CancelFunc
	ctx        context.Context
	// The boot being played (its registration included): its context,
	// cancelled when the board goes back to its flash mode, and closed
	// when it ends.
	bootCtx    context.Context
	bootCancel context.CancelFunc
	bootDone   chan struct{}
	bootGen    atomic.Uint64 // counts boots: a new boot starts a new console session
	wg         sync.WaitGroup
	consoleMu  sync.Mutex
	snapDone   atomic.Bool
}

// NewBoard makes a board; Start plugs it in.
func NewBoard(cfg BoardConfig) (*Board, error) {
	if cfg.Serial == "" {
		return nil, errors.New("sim: a board needs a serial")
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeUMS
	}
	if cfg.Profile == "" {
		cfg.Profile = "uc20"
	}
	if cfg.Speed <= 0 {
		cfg.Speed = 1
	}
	if cfg.KeyBits == 0 {
		cfg.KeyBits = 4096
	}
	if cfg.DiskSize == 0 {
		cfg.DiskSize = 256 << 20
	}
	if cfg.FastbootAddr == "" {
		cfg.FastbootAddr = "127.0.0.1:0"
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Storage), 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.Storage); os.IsNotExist(err) {
		f, err := os.Create(cfg.Storage)
		if err != nil {
			return nil, err
		}
		f.Truncate(cfg.DiskSize)
		f.Close()
	}
	m, s, err := openPTY()
	if err != nil {
		return nil, fmt.Errorf("sim: console pty: %w", err)
	}
	b := &Board{cfg: cfg, master: m, slave: s, state: StateOff, booted: make(chan struct{}), registered: make(chan struct{})}
	if cfg.QEMU != nil {
		if b.qemu, err = newQEMUConsole(); err != nil {
			m.Close()
			s.Close()
			return nil, err
		}
	}
	if cfg.ConsoleLink != "" {
		os.MkdirAll(filepath.Dir(cfg.ConsoleLink), 0o755)
		os.Remove(cfg.ConsoleLink)
		if err := os.Symlink(s.Name(), cfg.ConsoleLink); err != nil {
			m.Close()
			s.Close()
			return nil, err
		}
	}
	return b, nil
}

// Serial is the board's hardware serial.
func (b *Board) Serial() string { return b.cfg.Serial }

// StoragePath is the file holding the board's eMMC.
func (b *Board) StoragePath() string { return b.cfg.Storage }

// Port is the USB port path the board shows on.
func (b *Board) Port() string { return b.cfg.Port }

// Mode is the board's storage mode.
func (b *Board) Mode() Mode { return b.cfg.Mode }

// Faults returns the board's faults.
func (b *Board) Faults() Faults { return b.cfg.Faults }

// ConsolePath is the console device (the pty's slave).
func (b *Board) ConsolePath() string { return b.slave.Name() }

// FastbootAddr is where the board's fastboot listens ("" in UMS mode or
// before Start).
func (b *Board) FastbootAddr() string {
	if b.fb == nil {
		return ""
	}
	return b.fb.Addr()
}

// State is the board's state.
func (b *Board) State() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

func (b *Board) setState(s string) {
	b.mu.Lock()
	b.state = s
	b.mu.Unlock()
	b.cfg.Logger.Debug().Str("board", b.cfg.Serial).Str("state", s).Msg("sim board")
}

// Start powers the board up in its flash mode: it shows on its USB port
// and its console answers.
func (b *Board) Start(ctx context.Context) error {
	b.ctx, b.cancel = context.WithCancel(ctx)
	if b.cfg.Mode == ModeFastboot {
		fb, err := fastboottest.Listen(b.cfg.FastbootAddr, fastboottest.Config{
			Serial: b.cfg.Serial, Product: "sim-armhf", Storage: b.cfg.Storage, MaxDownload: 32 << 20,
			Throttle: b.cfg.Faults.SlowMBps * 1e6, FailWriteAt: b.cfg.Faults.WriteErrorAt,
			UnplugAfter: b.cfg.Faults.UnplugAfter, OnUnplug: b.pulledOut,
			OnReboot: func(kind string) {
				if kind == "" {
					go b.Boot()
				}
			},
		})
		if err != nil {
			return err
		}
		b.fb = fb
	}
	b.setState(StateFlashMode)
	b.show()
	b.wg.Add(1)
	go b.consoleInput()
	if b.qemu != nil {
		b.wg.Add(1)
		go b.relayQEMU()
	}
	return nil
}

// show presents the board on its USB port as its state dictates.
func (b *Board) show() {
	if b.cfg.Presence == nil || b.cfg.Port == "" {
		return
	}
	d := usb.Device{PortPath: b.cfg.Port, Serial: b.cfg.Serial, Manufacturer: "U-Boot"}
	switch b.State() {
	case StateFlashMode:
		if b.cfg.Mode == ModeFastboot {
			d.VID, d.PID, d.Product, d.Fastboot, d.Kind = "18d1", "4ee0", "USB download gadget", true, "fastboot"
		} else {
			d.VID, d.PID, d.Product, d.Disks, d.Kind = "0525", "a4a5", "USB download gadget", []string{b.cfg.Storage}, "disk"
		}
	case StateBooted, StateBooting, StateFailed:
		// Ubuntu Core's USB gadget after the boot.
		d.VID, d.PID, d.Product, d.Manufacturer, d.Kind = "0525", "a4a2", "Ubuntu Core", "Canonical", "booted"
	default:
		b.cfg.Presence.Unplug(b.cfg.Port)
		return
	}
	b.cfg.Presence.Plug(d)
}

// pulledOut is the board going away mid-flash.
func (b *Board) pulledOut() {
	b.gone.Store(true)
	b.setState(StateUnplugged)
	if b.cfg.Presence != nil {
		b.cfg.Presence.Unplug(b.cfg.Port)
	}
}

// Remove takes the board off the bench (the operator pulls it).
func (b *Board) Remove() {
	b.pulledOut()
	b.Close()
}

// Close stops the board.
func (b *Board) Close() {
	if b.cancel != nil {
		b.cancel()
	}
	if b.fb != nil {
		b.fb.Close()
	}
	b.master.Close()
	b.slave.Close()
	if b.qemu != nil {
		b.qemu.Close()
	}
	if b.cfg.ConsoleLink != "" {
		os.Remove(b.cfg.ConsoleLink)
	}
	b.wg.Wait()
}

// Target is the board's storage as a UMS disk shows it to the station,
// with the board's faults.
func (b *Board) Target() (flash.Target, error) {
	if b.cfg.Mode != ModeUMS || b.State() != StateFlashMode {
		return nil, &flash.Failure{Reason: flash.ReasonOpen, Offset: -1, Detail: fmt.Sprintf("board %s shows no disk", b.cfg.Serial)}
	}
	ft, err := flash.OpenFileTarget(b.cfg.Storage)
	if err != nil {
		return nil, err
	}
	var t flash.Target = &storage{FileTarget: ft, b: b}
	if b.cfg.Faults.SlowMBps > 0 {
		t = flash.Throttle(t, b.cfg.Faults.SlowMBps*1e6)
	}
	return t, nil
}

// storage applies a board's faults to writes of its disk.
type storage struct {
	*flash.FileTarget
	b *Board
}

func (s *storage) Name() string           { return "sim:" + s.b.cfg.Serial }
func (s *storage) Capacity() int64        { return s.b.cfg.DiskSize }
func (s *storage) EnsureSize(int64) error { return nil }

func (s *storage) WriteAt(p []byte, off int64) (int, error) {
	f := s.b.cfg.Faults
	if s.b.gone.Load() {
		return 0, syscall.ENODEV
	}
	if f.WriteErrorAt > 0 && off <= f.WriteErrorAt && f.WriteErrorAt < off+int64(len(p)) {
		return 0, syscall.EIO
	}
	if f.UnplugAfter > 0 && s.b.written.Load()+int64(len(p)) > f.UnplugAfter {
		s.b.pulledOut()
		return 0, syscall.ENODEV
	}
	n, err := s.FileTarget.WriteAt(p, off)
	s.b.written.Add(int64(n))
	return n, err
}

func (s *storage) ReadAt(p []byte, off int64) (int, error) {
	if s.b.gone.Load() {
		return 0, syscall.ENODEV
	}
	return s.FileTarget.ReadAt(p, off)
}

func (s *storage) Gone() bool { return s.b.gone.Load() }

// imageGood reports whether the storage holds the expected image.
func (b *Board) imageGood() bool {
	if b.cfg.Expect == nil {
		fi, err := os.Stat(b.cfg.Storage)
		return err == nil && fi.Size() > 0
	}
	f, err := os.Open(b.cfg.Storage)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, b.cfg.Expect.ChunkSize)
	for _, c := range b.cfg.Expect.Chunks {
		if _, err := f.ReadAt(buf[:c.Length], c.Offset); err != nil && !errors.Is(err, io.EOF) {
			return false
		}
		sum := sha256.Sum256(buf[:c.Length])
		if hex.EncodeToString(sum[:]) != c.SHA256 {
			return false
		}
	}
	return true
}

// seedLabel is the recovery system label of the seed on the board's disk,
// as its bootloader would find it ("" when the disk holds none).
func (b *Board) seedLabel() string {
	if b.cfg.Faults.OtherSeed != "" {
		return b.cfg.Faults.OtherSeed
	}
	img, err := seed.Read(b.bootContext(), b.cfg.Storage)
	if err != nil || img.Seed == nil {
		return ""
	}
	return img.Seed.Label
}

// PowerCycle is a hub port power cycle: the board restarts from its
// storage (a first boot when it was just flashed).
func (b *Board) PowerCycle() {
	b.PowerOff()
	b.PowerOn()
}

// PowerOff cuts the board's power (its hub port switched off): whatever
// it was doing stops (a boot in progress, its registration), it leaves
// the bus, its console falls silent. A pulled board stays pulled; one
// with Faults.KeepsPower does not notice.
func (b *Board) PowerOff() {
	if b.cfg.Faults.KeepsPower || b.State() == StateUnplugged {
		return
	}
	b.stopBoot()
	b.mu.Lock()
	if b.state == StateUnplugged { // pulled meanwhile
		b.mu.Unlock()
		return
	}
	b.state = StateOff
	b.mu.Unlock()
	if b.fb != nil {
		b.fb.Close() // no power, no fastboot
	}
	if b.cfg.Presence != nil {
		b.cfg.Presence.Unplug(b.cfg.Port)
	}
}

// PowerOn powers a board that was off: it boots from its storage and
// shows on the bus as the booted system does. One that kept its power
// carries on; one with Faults.StaysOff stays dark.
func (b *Board) PowerOn() {
	if b.cfg.Faults.KeepsPower || b.cfg.Faults.StaysOff || b.State() != StateOff {
		return
	}
	b.Boot()
}

// stopBoot ends the boot being played, if any (its registration too),
// and readies the board for another: a new device key, nothing booted or
// registered yet.
func (b *Board) stopBoot() {
	b.mu.Lock()
	cancel, done := b.bootCancel, b.bootDone
	b.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	b.mu.Lock()
	b.serial, b.regErr = nil, nil
	b.booted, b.registered = make(chan struct{}), make(chan struct{})
	b.bootCancel, b.bootDone = nil, nil
	b.mu.Unlock()
	b.snapDone.Store(false)
}

// Boot starts the board from its storage and plays its first boot on the
// console; once the console is ready it registers with the device
// service.
func (b *Board) Boot() {
	b.mu.Lock()
	if b.state == StateBooting || b.state == StateBooted || b.state == StateUnplugged || b.ctx == nil {
		b.mu.Unlock()
		return
	}
	b.state = StateBooting
	b.bootGen.Add(1)
	b.bootCtx, b.bootCancel = context.WithCancel(b.ctx)
	done := make(chan struct{})
	b.bootDone = done
	b.mu.Unlock()
	if b.fb != nil {
		b.fb.Close() // fastboot leaves with the reboot
	}
	// Re-enumeration: off the bus while rebooting, back as the booted device.
	if b.cfg.Presence != nil {
		b.cfg.Presence.Unplug(b.cfg.Port)
	}
	if b.cfg.Faults.CorruptAfterFlash {
		if err := b.corruptStorage(); err != nil {
			b.cfg.Logger.Debug().Err(err).Str("board", b.cfg.Serial).Msg("sim board: corrupting its storage")
		}
	}
	b.wg.Add(1)
	go func() {
		defer close(done)
		if b.qemu != nil {
			b.playQEMU()
			return
		}
		b.play()
	}()
}

// ReenterFlashMode puts a UMS board back into its flash mode, as an
// operator does to work it again: the boot being played stops (its
// registration too) and the board shows as a disk on its port. Its next
// registration uses a new device key, as a reflashed board does.
func (b *Board) ReenterFlashMode() error {
	if b.cfg.Mode != ModeUMS {
		return errors.New("sim: only a UMS board re-enters its flash mode")
	}
	b.stopBoot()
	b.setState(StateFlashMode)
	b.show()
	return nil
}

// bootContext is the context of the boot being played.
func (b *Board) bootContext() context.Context {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bootCtx != nil {
		return b.bootCtx
	}
	return b.ctx
}

func (b *Board) pause(d time.Duration) bool {
	t := time.NewTimer(time.Duration(float64(d) / b.cfg.Speed))
	defer t.Stop()
	select {
	case <-b.bootContext().Done():
		return false
	case <-t.C:
		return true
	}
}

// write sends console bytes paced at 115200 baud times the speed.
func (b *Board) write(text []byte) bool {
	const chunk = 64
	per := time.Duration(chunk * 10 * int64(time.Second) / 115200) // real time at 115200 baud
	for len(text) > 0 {
		n := min(chunk, len(text))
		b.consoleMu.Lock()
		_, err := b.master.Write(text[:n])
		b.consoleMu.Unlock()
		if err != nil {
			return false
		}
		text = text[n:]
		if len(text) > 0 && !b.pause(per) {
			return false
		}
	}
	return true
}

func (b *Board) play() {
	defer b.wg.Done()
	good := b.imageGood()
	f := b.cfg.Faults
	seed := uint64(len(b.cfg.Serial)) * 7919
	for _, c := range b.cfg.Serial {
		seed = seed*31 + uint64(c)
	}
	if f.Garbage {
		for i := 0; i < 40; i++ {
			if !b.write(garbage(256, seed+uint64(i))) || !b.pause(time.Second) {
				return
			}
		}
		b.setState(StateFailed)
		return
	}
	snaps := []string{"snapd", "core22", "pi-kernel", "acme-gadget"}
	if b.cfg.Model != nil {
		if m, err := serialvault.AsModel(b.cfg.Model); err == nil && len(m.Snaps) > 0 {
			snaps = snaps[:0]
			for _, s := range m.Snaps {
				snaps = append(snaps, s.Name)
			}
		}
	}
	ip := fmt.Sprintf("10.42.0.%d", 10+seed%200)
	steps := firstBoot(b.cfg.Profile, b.seedLabel(), good, b.cfg.LoginUser != "", ip, snaps, f, seed)
	b.show()
	for _, s := range steps {
		if s.stage != "" && f.HangAt == s.stage {
			b.setState(StateFailed)
			<-b.bootContext().Done() // the board hangs: nothing more on the console
			return
		}
		if s.stage == "console-ready" && good && !f.failsBoot() {
			// getty listens from the moment it prints its prompt.
			b.setState(StateBooted)
		}
		if s.pause > 0 && !b.pause(s.pause) {
			return
		}
		if s.text != "" && !b.write([]byte(s.text)) {
			return
		}
	}
	if !good || f.failsBoot() {
		b.setState(StateFailed)
		return
	}
	b.setState(StateBooted)
	b.show()
	b.mu.Lock()
	booted, registered := b.booted, b.registered
	b.mu.Unlock()
	close(booted)
	if f.HoldRegistration != nil {
		select {
		case <-f.HoldRegistration:
		case <-b.bootContext().Done():
			return
		}
	}
	if !f.NeverRegisters {
		b.register(registered)
	}
}

// register runs snapd's "Initialize device": the device key, then the
// device service. Nothing shows on the console.
func (b *Board) register(registered chan struct{}) {
	defer close(registered)
	key := b.cfg.Key
	if key == nil {
		var err error
		if key, err = serialvault.GenerateKey(b.cfg.KeyBits); err != nil {
			b.regErr = err
			return
		}
	}
	if b.cfg.Model == nil || b.cfg.DeviceService == "" {
		b.regErr = errors.New("no model or device service")
		return
	}
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) / b.cfg.Speed) }
	d := &vaulttest.Device{
		Key: key, Model: b.cfg.Model, Serial: b.cfg.Serial, URL: b.cfg.DeviceService, Headers: b.cfg.Headers,
		Body:      []byte(fmt.Sprintf("mac: \"02:42:%s\"\n", macOf(b.cfg.Serial))),
		RetryWait: scale(60 * time.Second), NoNetworkWait: scale(30 * time.Second), PollWait: scale(60 * time.Second),
		FailWait: scale(5 * time.Minute), StaleRequestID: b.cfg.Faults.VaultRefuses,
	}
	res, err := d.Register(b.bootContext())
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.regErr = err
		return
	}
	b.serial = res.Serial
	b.snapDone.Store(true)
}

func macOf(serial string) string {
	sum := sha256.Sum256([]byte(serial))
	return fmt.Sprintf("%02x:%02x:%02x:%02x", sum[0], sum[1], sum[2], sum[3])
}

// Registered returns the serial assertion once the board registered.
func (b *Board) Registered() (*serialvault.Serial, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.serial, b.regErr
}

// WaitBooted waits until the console is ready.
func (b *Board) WaitBooted(ctx context.Context) error {
	b.mu.Lock()
	booted := b.booted
	b.mu.Unlock()
	select {
	case <-booted:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitRegistered waits for the end of the registration.
func (b *Board) WaitRegistered(ctx context.Context) (*serialvault.Serial, error) {
	b.mu.Lock()
	registered := b.registered
	b.mu.Unlock()
	select {
	case <-registered:
		return b.Registered()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// consoleInput answers what is typed on the console: Ctrl-C then `reset`
// or `boot` in U-Boot's flash mode boots the board; once booted, a getty
// and a shell answer for the factory user.
func (b *Board) consoleInput() {
	defer b.wg.Done()
	r := bufio.NewReader(b.master)
	echo := func(s string) {
		b.consoleMu.Lock()
		b.master.Write([]byte(s))
		b.consoleMu.Unlock()
	}
	var line []byte // typed at U-Boot's prompt
	g := &getty.Getty{User: b.cfg.LoginUser, Password: b.cfg.LoginPassword, Kernel: "5.15.0-1049-raspi", Snap: b.registration, Out: echo}
	gen := b.bootGen.Load()
	for {
		c, err := r.ReadByte()
		if err != nil {
			return
		}
		if gen2 := b.bootGen.Load(); gen2 != gen {
			// Another boot: a fresh getty, nobody logged in.
			gen, line = gen2, line[:0]
			g.Reset()
		}
		state := b.State()
		if b.qemu != nil && (state == StateBooting || state == StateBooted) {
			// The guest's own console answers (its U-Boot, its getty).
			if _, err := b.qemu.master.Write([]byte{c}); err != nil {
				return
			}
			continue
		}
		if state == StateFlashMode {
			if c == 0x03 {
				echo("<INTERRUPT>\r\n=> ")
				line = line[:0]
				continue
			}
			if c == '\r' || c == '\n' {
				cmd := strings.TrimSpace(string(line))
				line = line[:0]
				if cmd == "reset" || cmd == "boot" {
					echo("\r\nresetting ...\r\n")
					go b.Boot()
				}
				continue
			}
			line = append(line, c)
			continue
		}
		if state != StateBooted || b.cfg.LoginUser == "" {
			continue // the console is not listening
		}
		g.Feed(c)
	}
}

// registration is what the board's snapd knows of its registration, as
// its console's getty shows it.
func (b *Board) registration() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.serial != nil && b.snapDone.Load() {
		return b.serial.Encode(), nil
	}
	return nil, b.regErr
}
