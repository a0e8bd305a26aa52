package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/internal/armimage"
	"github.com/flashstation/flashstation/internal/seedimage"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
	"github.com/flashstation/flashstation/usb"
	"github.com/flashstation/flashstation/usb/usbtest"
)

// Names of the simulated bench's brand, model and lines.
const (
	BrandID      = "acme"
	ModelName    = "acme-gw-sim"
	APIKey       = "sim-model-api-key-0123456789"
	LineUMS      = "line1"
	LineFastboot = "line2"
	FactoryUser  = "factory"
	// AdminUser and AdminKey read the vault double's signing log.
	AdminUser = "station"
	AdminKey  = "sim-signing-log-key-0123"
)

// BenchConfig describes a simulated bench.
type BenchConfig struct {
	// Dir keeps the station config (station.yaml), the vault's public key
	// (vault-key.pub) and key, the image, the model and the boards' disks.
	Dir    string
	Boards int     // default 8: half UMS, half fastboot
	Speed  float64 // boot speed factor (default 20)
	// Faults gives some boards a fault (a deterministic mix).
	Faults bool
	// StationID names the bench's station (default sim-bench); benches
	// that share a factory ledger need their own.
	StationID string
	// FactoryLedgerFile, when set, is a file holding the factory ledger's
	// URL: the station file forwards to it (station.ledger.url).
	FactoryLedgerFile string
	// FastKeys uses a 2048-bit key for the vault too (tests); real ones
	// are 4096 bits.
	FastKeys bool
	// DeviceKeyBits is the size of the boards' device keys; 0: 2048.
	// Real boards make 4096-bit keys (for minutes on armhf); the bench's
	// are smaller so that a bench of 64 boards spends its time booting,
	// not making keys (verifiers accept 2048 and up).
	DeviceKeyBits int
	// ImageSize is the raw image size (default 64 MiB, about a tenth data).
	ImageSize int64
	// OtherModel gives the second line the model of another device
	// (other-model.assert: the bench's brand and key, another model
	// name), so the image identity gate refuses the bench's image for it
	// and holds the line.
	OtherModel bool
	// FaultsOf, when set, gives board i its faults instead of Faults'
	// mix (tests hold a board in a known state with it).
	FaultsOf func(board int) Faults
	// MinTimeout is the least of the boot profile's timeouts once they
	// are divided by Speed (default 15 s); tests raise it so that a loaded
	// machine never times out a boot that works.
	MinTimeout time.Duration
	// SerialOf, when set, gives board i (from 0, in plugging order) its
	// hardware serial instead of SIM00001, SIM00002... (tests give two
	// boards one serial, as boards whose U-Boot shares one do).
	SerialOf func(board int) string
	// QEMU, when set, makes every board a QEMU board (BoardConfig.QEMU):
	// the image is a real bootable armhf image (internal/armimage) and the
	// boots are real, at real speed (Speed is 1).
	QEMU   *QEMUAssets
	Logger zerolog.Logger
}

// SlotInfo is one slot of the simulated bench and its board.
type SlotInfo struct {
	ID      string
	Line    string
	Port    string
	Console string // the console link the station opens
	Hub     string
	HubPort int
	Board   *Board
}

// Bench is a simulated flashing bench in one process: the vault double,
// boards on USB ports, and the station file describing them. It is also
// the station's hardware: Devices, OpenJob and SetPortPower behave as
// USB discovery, targets and hub power do on a real bench.
type Bench struct {
	Dir        string
	ConfigPath string
	VaultURL   string
	AdminURL   string          // the vault double's signing log
	Image      *flash.Prepared // the image the boards expect
	Slots      []SlotInfo
	Vault      *vaulttest.Vault
	Bus        *usbtest.Bus
	Hubs       *usbtest.Hubs

	cfg      BenchConfig
	srv      *http.Server
	adminSrv *http.Server
	model    *serialvault.Assertion
	vaultKey *serialvault.PrivateKey
	mu       sync.Mutex
	boardN   int
}

// FaultMix is the faults the bench gives boards with Faults set, by
// board index (modulo its length); "" means none.
var FaultMix = []Faults{
	{}, {}, {WriteErrorAt: 3 << 20}, {}, {KernelPanic: true}, {}, {HangAt: "seeding"}, {},
	{Garbage: true}, {}, {UnplugAfter: 2 << 20}, {}, {BootLoop: true}, {}, {VaultRefuses: true}, {},
}

// QEMUFaultMix is FaultMix for QEMU boards: the faults their guest acts
// out for real (a kernel panic, a seed snap that will not mount, a reboot
// loop) and a kernel lost after the verified flash, which U-Boot refuses.
// Boards alternate between the lines: with 4 boards, one of each line
// fails.
var QEMUFaultMix = []Faults{
	{}, {KernelPanic: true}, {}, {CorruptAfterFlash: true}, {SeedError: true}, {}, {BootLoop: true}, {},
}

// NewBench builds the bench: keys, model, image, vault, boards and
// station.yaml in cfg.Dir. Boards start in their flash modes.
func NewBench(ctx context.Context, cfg BenchConfig) (*Bench, error) {
	if cfg.Boards <= 0 {
		cfg.Boards = 8
	}
	if cfg.Speed <= 0 {
		cfg.Speed = 20
	}
	if cfg.ImageSize <= 0 {
		cfg.ImageSize = 64 << 20
	}
	if cfg.ImageSize < MinImageSize {
		return nil, fmt.Errorf("sim: an image of %d bytes is too small for its layout (at least %d)", cfg.ImageSize, MinImageSize)
	}
	if cfg.MinTimeout <= 0 {
		cfg.MinTimeout = 15 * time.Second
	}
	if cfg.QEMU != nil {
		cfg.Speed = 1 // real boots take real time
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	b := &Bench{Dir: cfg.Dir, cfg: cfg, Bus: &usbtest.Bus{}, Hubs: &usbtest.Hubs{}}
	bits := 4096
	if cfg.FastKeys {
		bits = 2048
	}
	var err error
	if b.vaultKey, _, err = serialvault.LoadOrCreateKey(filepath.Join(cfg.Dir, "vault-key.pem"), bits); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "vault-key.pub"), []byte(b.vaultKey.Public().Encode()+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := b.writeModel(); err != nil {
		return nil, err
	}
	if err := b.writeImage(ctx); err != nil {
		return nil, err
	}
	if cfg.OtherModel {
		if err := b.writeOtherModel(); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "vault-api.key"), []byte(APIKey+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "factory.password"), []byte(factoryPassword(cfg.Dir)+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := b.startVault(); err != nil {
		return nil, err
	}
	proxy1, proxy2, err := freePorts()
	if err != nil {
		b.Close()
		return nil, err
	}
	if err := b.writeProfile(); err != nil {
		b.Close()
		return nil, err
	}
	for i := range cfg.Boards {
		slot := SlotInfo{Port: fmt.Sprintf("1-1.%d", i+1), Hub: "1-1", HubPort: i + 1}
		mode := ModeUMS
		slot.Line = LineUMS
		slot.ID = fmt.Sprintf("A%d", i/2+1)
		if i%2 == 1 {
			mode, slot.Line, slot.ID = ModeFastboot, LineFastboot, fmt.Sprintf("B%d", i/2+1)
		}
		slot.Console = filepath.Join(cfg.Dir, "consoles", slot.ID)
		b.Slots = append(b.Slots, slot)
		service := fmt.Sprintf("http://127.0.0.1:%d/v1/", proxy1)
		headers := map[string]string(nil)
		if slot.Line == LineFastboot {
			// This line's gadget talks to the vault itself; the station
			// reads the serial back over the console.
			service, headers = b.VaultURL, map[string]string{"api-key": APIKey}
		}
		var faults Faults
		if cfg.Faults {
			mix := FaultMix
			if cfg.QEMU != nil {
				mix = QEMUFaultMix
			}
			faults = mix[i%len(mix)]
		}
		if cfg.FaultsOf != nil {
			faults = cfg.FaultsOf(i)
		}
		if _, err := b.plugBoard(ctx, i, mode, service, headers, faults); err != nil {
			b.Close()
			return nil, err
		}
	}
	if err := b.writeStation(proxy1, proxy2); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// factoryPassword is the simulated factory user's password (per bench).
func factoryPassword(dir string) string {
	return fmt.Sprintf("sim-%08x", rand.Uint32()^uint32(len(dir)))
}

// plugBoard puts a new board into slot i.
func (b *Bench) plugBoard(ctx context.Context, i int, mode Mode, service string, headers map[string]string, faults Faults) (*Board, error) {
	slot := &b.Slots[i]
	b.mu.Lock()
	b.boardN++
	n := b.boardN
	b.mu.Unlock()
	pw, _ := os.ReadFile(filepath.Join(b.Dir, "factory.password"))
	serial := fmt.Sprintf("SIM%05d", n)
	if b.cfg.SerialOf != nil {
		serial = b.cfg.SerialOf(n - 1)
	}
	bits := b.cfg.DeviceKeyBits
	if bits == 0 {
		bits = 2048
	}
	diskSize := b.cfg.ImageSize + 8<<20
	if b.cfg.QEMU != nil {
		diskSize = armimage.DiskSize + 8<<20
	}
	board, err := NewBoard(BoardConfig{
		Serial: serial, Mode: mode, Storage: filepath.Join(b.Dir, "disks", fmt.Sprintf("%s-%d.img", slot.ID, n)),
		DiskSize: diskSize, QEMU: b.cfg.QEMU, ConsoleLink: slot.Console, Port: slot.Port, Presence: b.Bus,
		Profile: "uc20", Speed: b.cfg.Speed, Expect: b.Image, Model: b.model,
		DeviceService: service, Headers: headers, KeyBits: bits,
		LoginUser: FactoryUser, LoginPassword: strings.TrimSpace(string(pw)), Faults: faults, Logger: b.cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	// In the slot before it shows on the bus: the station may open it the
	// moment it appears.
	b.mu.Lock()
	slot.Board = board
	b.mu.Unlock()
	if err := board.Start(ctx); err != nil {
		return nil, err
	}
	return board, nil
}

// Replace removes the board of slot i (the operator pulls it) and puts a
// fresh one, without faults, in its place.
func (b *Bench) Replace(ctx context.Context, i int) (*Board, error) {
	b.mu.Lock()
	old := b.Slots[i].Board
	b.mu.Unlock()
	mode, service, headers := old.cfg.Mode, old.cfg.DeviceService, old.cfg.Headers
	old.Remove()
	return b.plugBoard(ctx, i, mode, service, headers, Faults{})
}

func (b *Bench) startVault() error {
	// The vault keeps its signing log beside the bench, as the real one
	// keeps it in its database: a bench opened again on the directory
	// (a restarted demo) has a vault that remembers what it signed.
	var err error
	if b.Vault, err = vaulttest.Open(vaulttest.Options{
		Models:     []vaulttest.Model{{BrandID: BrandID, Model: ModelName, APIKey: APIKey, Key: b.vaultKey}},
		AdminUsers: map[string]string{AdminUser: AdminKey},
		LogFile:    filepath.Join(b.Dir, VaultLogFile),
	}); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.srv = &http.Server{Handler: b.Vault.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go b.srv.Serve(l)
	b.VaultURL = "http://" + l.Addr().String() + "/v1/"
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.adminSrv = &http.Server{Handler: b.Vault.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	go b.adminSrv.Serve(al)
	b.AdminURL = "http://" + al.Addr().String() + "/"
	return os.WriteFile(filepath.Join(b.Dir, "signinglog.key"), []byte(AdminKey+"\n"), 0o600)
}

// freePorts finds two free TCP ports for the lines' proxies.
func freePorts() (int, int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	// Below the kernel's ephemeral range (32768 and up on Linux): between
	// this check and the proxy's listen, no other program's outgoing
	// connection or ":0" listener can take the port.
	for try := 0; len(ports) < 2 && try < 200; try++ {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, port)
	}
	if len(ports) < 2 {
		return 0, 0, errors.New("sim: no free port for the proxies between 20000 and 32000")
	}
	return ports[0], ports[1], nil
}

func (b *Bench) writeModel() error {
	path := filepath.Join(b.Dir, "model.assert")
	if data, err := os.ReadFile(path); err == nil {
		if a, err := serialvault.Decode(data); err == nil && serialvault.Verify(a, b.vaultKey.Public()) == nil {
			b.model = a
			return nil
		}
	}
	a, err := serialvault.Sign(map[string]any{
		"type": "model", "authority-id": BrandID, "series": "16", "brand-id": BrandID, "model": ModelName,
		"architecture": "armhf", "base": "core22", "grade": "signed", "timestamp": "2026-01-01T00:00:00Z",
		"snaps": []any{
			map[string]any{"name": "acme-gadget", "id": "AcmeGadgetSnapId0000000000000001", "type": "gadget", "default-channel": "22/stable"},
			map[string]any{"name": "pi-kernel", "id": "jeIuP6tfFrvAdic8DMWqHmoaoukAPNbJ", "type": "kernel", "default-channel": "22/stable"},
			map[string]any{"name": "core22", "id": "amcUKQILKXHHTlmSa7NMdnXSx02dNeeT", "type": "base", "default-channel": "latest/stable"},
			map[string]any{"name": "snapd", "id": "PMrrV4ml8uWuEUDBT8dSGnKUYbevVhc4", "type": "snapd", "default-channel": "latest/stable"},
		},
	}, nil, b.vaultKey, time.Now())
	if err != nil {
		return err
	}
	b.model = a
	return os.WriteFile(path, a.Encode(), 0o644)
}

// otherModelFile is the model of another device that OtherModel gives the
// second line.
const otherModelFile = "other-model.assert"

// writeOtherModel writes otherModelFile: the bench's model, renamed, signed
// by the same key.
func (b *Bench) writeOtherModel() error {
	h := map[string]any{}
	for _, hd := range b.model.Headers() {
		if hd.Name != "sign-key-sha3-384" {
			h[hd.Name] = hd.Value
		}
	}
	h["model"] = ModelName + "-other"
	a, err := serialvault.Sign(h, nil, b.vaultKey, time.Now())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.Dir, otherModelFile), a.Encode(), 0o644)
}

// VaultLogFile is the vault double's signing log in the bench directory.
const VaultLogFile = "vault-signing-log.jsonl"

// MinImageSize is the smallest image the bench makes (its partitions
// end at 11 MiB, and the backup GPT needs the end of the disk).
const MinImageSize = 16 << 20

// simImageFormat changes when the simulated bench's image changes, so an
// image an older bench left in its directory is built again.
const simImageFormat = "sim-seedimage-1"

// simSeedData and simRawData are the image's random data: a file in the
// seed (its data spans the seed partition from about 1 MiB to 5 MiB, past
// the write-error fault's 3 MiB) and a raw partition after it. With the
// file systems' tables, about a tenth of a 64 MiB image is mapped.
const (
	simSeedData = 4 << 20
	simRawData  = 2 << 20
)

// writeImage makes the bench's image, image.img.zst: a real Ubuntu Core
// 20+ disk image (internal/seedimage) whose ubuntu-seed holds the bench's
// signed model at systems/<label>/model and its snaps, the gadget
// acme-gadget with a prepare-device hook and a gadget.yaml that agrees
// with the partitions, and random data to flash. It is built again when
// its inputs changed (image.inputs), and prepared to know what the boards
// expect.
func (b *Bench) writeImage(ctx context.Context) error {
	path := filepath.Join(b.Dir, "image.img.zst")
	var err error
	if b.cfg.QEMU != nil {
		err = b.writeQEMUImage(ctx, path)
	} else {
		err = b.writeSeedImage(ctx, path)
	}
	if err != nil {
		return err
	}
	c, err := flash.NewCache(filepath.Join(b.Dir, "sim-cache"))
	if err != nil {
		return err
	}
	b.Image, err = c.Prepare(ctx, b.imageSpec(), nil)
	return err
}

func (b *Bench) writeSeedImage(ctx context.Context, path string) error {
	model, err := os.ReadFile(filepath.Join(b.Dir, "model.assert"))
	if err != nil {
		return err
	}
	sum := sha256.New()
	fmt.Fprintf(sum, "%s\n%d\n%s\n", simImageFormat, b.cfg.ImageSize, qemuLabel)
	sum.Write(model)
	hash := simImageFormat + " " + hex.EncodeToString(sum.Sum(nil))
	stamp := filepath.Join(b.Dir, "image.inputs")
	if old, err := os.ReadFile(stamp); err == nil && string(old) == hash {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
	}
	if err := seedimage.Available(); err != nil {
		return fmt.Errorf("sim: the bench's image needs Debian's image tools: %w", err)
	}
	raw := filepath.Join(b.Dir, "image.img.tmp")
	defer os.Remove(raw)
	err = seedimage.Build(ctx, raw, seedimage.Spec{
		Kind: seedimage.KindUC20, Label: qemuLabel, Model: model,
		Gadget: &seedimage.Gadget{Name: "acme-gadget", Hooks: []string{"prepare-device"}},
		Snaps:  []string{"pi-kernel", "core22", "snapd"},
		Extra:  []seedimage.Region{{Name: "bench-data.bin", File: true, Size: simSeedData}, {Name: "bench-data", Size: simRawData}},
		Size:   b.cfg.ImageSize,
	})
	if err != nil {
		return fmt.Errorf("sim: the bench's image: %w", err)
	}
	if err := compress(raw, path); err != nil {
		return err
	}
	return os.WriteFile(stamp, []byte(hash), 0o644)
}

// compress writes src zstd-compressed at dst.
func compress(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	w, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		out.Close()
		return err
	}
	if _, err := io.Copy(w, in); err != nil {
		w.Close()
		out.Close()
		return fmt.Errorf("sim: compressing the image: %w", err)
	}
	if err := w.Close(); err != nil {
		out.Close()
		return fmt.Errorf("sim: compressing the image: %w", err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// imageSpec is the lines' image: a QEMU bench's comes with its bmap.
func (b *Bench) imageSpec() flash.ImageSpec {
	spec := flash.ImageSpec{Path: filepath.Join(b.Dir, "image.img.zst")}
	if b.cfg.QEMU != nil {
		spec.Bmap = filepath.Join(b.Dir, qemuBmap)
	}
	return spec
}

// writeProfile writes the boot profile with the station's timeouts scaled
// to the bench's speed, so a hung board fails in seconds, not minutes.
//
// Each stage gets at least MinTimeout (15 s) and the whole boot at least
// 2 min and four times that: a board that hangs in one stage then fails
// that stage's timeout well before the boot's cap, however slowly a
// loaded machine got it there.
func (b *Bench) writeProfile() error {
	scaleMin := func(d, least time.Duration) string {
		return max(time.Duration(float64(d)/b.cfg.Speed), least).Round(time.Second).String()
	}
	scale := func(d time.Duration) string { return scaleMin(d, b.cfg.MinTimeout) }
	p := fmt.Sprintf(`# The uc22 profile with timeouts divided by the simulated bench's speed (%g).
name: sim-uc22
base: uc22
first-bytes: %s
whole-boot: %s
stages:
  - {name: bootloader, timeout: %s}
  - {name: install-boot, timeout: %s}
  - {name: run-boot, timeout: %s}
  - {name: seeding, timeout: %s}
  - {name: console-ready, timeout: %s}
`, b.cfg.Speed, scale(30*time.Second), scaleMin(30*time.Minute, max(2*time.Minute, 4*b.cfg.MinTimeout)), scale(60*time.Second), scale(15*time.Minute),
		scale(5*time.Minute), scale(20*time.Minute), scale(3*time.Minute))
	return os.WriteFile(filepath.Join(b.Dir, "sim-profile.yaml"), []byte(p), 0o644)
}

// writeStation writes station.yaml describing the bench.
func (b *Bench) writeStation(proxy1, proxy2 int) error {
	var s strings.Builder
	station := b.cfg.StationID
	if station == "" {
		station = "sim-bench"
	}
	factory := ""
	if b.cfg.FactoryLedgerFile != "" {
		factory = fmt.Sprintf("  ledger: {url: {file: %q}}\n", b.cfg.FactoryLedgerFile)
	}
	fmt.Fprintf(&s, `# The simulated bench: %d boards, written by flashstation's simulator.
station:
  id: %s
  data-dir: data
%slines:
  - id: %s
    name: "Line 1 - gateway (UMS, recording proxy, identity checked on the console)"
    model: model.assert
    brand-keys: [vault-key.pub]
    image: {file: image.img.zst}
    vault:
      url: %s
      api-key: {file: vault-api.key}
      signing-log: {url: "%s", user: %s, key: {file: signinglog.key}}
    proxy: {listen: "127.0.0.1:%d"}
    registration: {expected-serial: "{hw}"}
    capture: {method: proxy, user: %s, password: {file: factory.password}}
    boot: {profile: sim-profile.yaml, trigger: hub-power}
  - id: %s
    name: "Line 2 - gateway (fastboot, console capture)"
    model: model.assert
    brand-keys: [vault-key.pub]
    image: {file: image.img.zst}
    vault:
      url: %s
      api-key: {file: vault-api.key}
      signing-log: {url: "%s", user: %s, key: {file: signinglog.key}}
    proxy: {listen: "127.0.0.1:%d"}
    capture: {method: console, user: %s, password: {file: factory.password}}
    boot: {profile: sim-profile.yaml, trigger: fastboot-reboot}
slots:
`, len(b.Slots), station, factory, LineUMS, b.VaultURL, b.AdminURL, AdminUser, proxy1, FactoryUser, LineFastboot, b.VaultURL, b.AdminURL, AdminUser, proxy2, FactoryUser)
	for _, sl := range b.Slots {
		method := "ums"
		if sl.Line == LineFastboot {
			method = "fastboot"
		}
		fmt.Fprintf(&s, "  - {id: %s, line: %s, usb-ports: [%q], method: %s, console: {port: %s, baud: 115200}, power: {hub: %q, port: %d}}\n",
			sl.ID, sl.Line, sl.Port, method, sl.Console, sl.Hub, sl.HubPort)
	}
	conf := s.String()
	if b.cfg.OtherModel {
		if i := strings.LastIndex(conf, "model: model.assert"); i >= 0 {
			conf = conf[:i] + "model: " + otherModelFile + conf[i+len("model: model.assert"):]
		}
	}
	if b.cfg.QEMU != nil {
		conf = strings.ReplaceAll(conf, "image: {file: image.img.zst}", "image: {file: image.img.zst, bmap: "+qemuBmap+"}")
	}
	b.ConfigPath = filepath.Join(b.Dir, "station.yaml")
	return os.WriteFile(b.ConfigPath, []byte(conf), 0o644)
}

// Close stops the boards and the vault.
func (b *Bench) Close() {
	for _, board := range b.boards(func(*SlotInfo) bool { return true }) {
		board.Close()
	}
	if b.srv != nil {
		b.srv.Close()
	}
	if b.adminSrv != nil {
		b.adminSrv.Close()
	}
	if b.Vault != nil {
		b.Vault.Close()
	}
}

// BoardAt returns the board on a USB port path.
func (b *Bench) BoardAt(port string) (*Board, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.Slots {
		if s.Port == port && s.Board != nil {
			return s.Board, true
		}
	}
	return nil, false
}

// Devices lists what shows on the bench's USB ports.
func (b *Bench) Devices() ([]usb.Device, error) { return b.Bus.Devices() }

// OpenJob opens the flash target of the device on a slot's port: the
// board's disk in UMS mode, its fastboot in fastboot mode.
func (b *Bench) OpenJob(ctx context.Context, dev usb.Device, o flash.TargetOptions) (flash.Job, error) {
	board, ok := b.BoardAt(dev.PortPath)
	if !ok {
		return nil, &flash.Failure{Reason: flash.ReasonUnplugged, Offset: -1, Detail: "no board on " + dev.PortPath}
	}
	if board.Mode() == ModeFastboot {
		if board.FastbootAddr() == "" {
			return nil, errors.New("fastboot not listening")
		}
		return flash.OpenJob(ctx, "fastboot:tcp:"+board.FastbootAddr(), o)
	}
	t, err := board.Target()
	if err != nil {
		return nil, err
	}
	return flash.NewTargetJob(t), nil
}

// SetPortPower switches a hub port, as a per-port switching hub does: a
// board whose port goes off loses power (it leaves the bus, its console
// falls silent), and boots from its storage when the port comes back on
// (Faults.KeepsPower and StaysOff make it misbehave).
func (b *Bench) SetPortPower(ctx context.Context, hub string, port int, on bool) error {
	if err := b.Hubs.SetPortPower(ctx, hub, port, on); err != nil {
		return err
	}
	for _, board := range b.boards(func(s *SlotInfo) bool { return s.Hub == hub && s.HubPort == port }) {
		if on {
			board.PowerOn()
		} else {
			board.PowerOff()
		}
	}
	return nil
}

// boards returns the boards in the slots that match.
func (b *Bench) boards(match func(*SlotInfo) bool) []*Board {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*Board
	for i := range b.Slots {
		if s := &b.Slots[i]; s.Board != nil && match(s) {
			out = append(out, s.Board)
		}
	}
	return out
}
