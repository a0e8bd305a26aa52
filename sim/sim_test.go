package sim_test

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
	"github.com/flashstation/flashstation/sim"
	"github.com/flashstation/flashstation/usb/usbtest"
)

// kit is a vault double, a model and an image for boards under test.
type kit struct {
	vault    *vaulttest.Vault
	url      string
	model    *serialvault.Assertion
	img      *flash.Prepared
	raw      string
	brandKey *serialvault.PrivateKey
}

func newKit(t *testing.T) *kit {
	t.Helper()
	k := &kit{brandKey: vaulttest.TestKey(0)}
	var err error
	k.model, err = serialvault.Sign(map[string]any{
		"type": "model", "authority-id": "acme", "series": "16", "brand-id": "acme", "model": "acme-gw-sim",
		"architecture": "armhf", "base": "core22", "timestamp": "2026-01-01T00:00:00Z",
		"snaps": []any{
			map[string]any{"name": "acme-gadget", "id": "g", "type": "gadget"},
			map[string]any{"name": "pi-kernel", "id": "k", "type": "kernel"},
		},
	}, nil, k.brandKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k.vault = vaulttest.New(vaulttest.Options{Models: []vaulttest.Model{{BrandID: "acme", Model: "acme-gw-sim", APIKey: "key", Key: k.brandKey}}})
	srv := httptest.NewServer(k.vault.Handler())
	t.Cleanup(srv.Close)
	k.url = srv.URL + "/v1/"
	dir := t.TempDir()
	k.raw = filepath.Join(dir, "image.img")
	data := make([]byte, 8<<20)
	for i := 1 << 20; i < 3<<20; i++ {
		data[i] = byte(i*7/4096) | 1
	}
	os.WriteFile(k.raw, data, 0o644)
	c, _ := flash.NewCache(filepath.Join(dir, "cache"))
	k.img, err = c.Prepare(context.Background(), flash.ImageSpec{Path: k.raw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kit) board(t *testing.T, serial string, mode sim.Mode, f sim.Faults, keyIdx int) (*sim.Board, *usbtest.Bus) {
	t.Helper()
	bus := &usbtest.Bus{}
	b, err := sim.NewBoard(sim.BoardConfig{
		Serial: serial, Mode: mode, Storage: filepath.Join(t.TempDir(), "emmc.img"), DiskSize: 16 << 20,
		Port: "1-1.2", Presence: bus, Speed: 200, Expect: k.img, Model: k.model,
		DeviceService: k.url, Headers: map[string]string{"api-key": "key"}, Key: vaulttest.TestKey(keyIdx),
		LoginUser: "factory", LoginPassword: "pw", Faults: f,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, bus
}

// ceiling bounds a wait; it only turns a hang into a failure.
const ceiling = 2 * time.Minute

func parseProfile(t *testing.T, text string) *console.Profile {
	t.Helper()
	p, err := console.ParseProfile([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// quickProfile is uc22 with timeouts that only turn a hang into a
// failure: a boot that works passes however loaded the machine is.
func quickProfile(t *testing.T) *console.Profile {
	t.Helper()
	return parseProfile(t, "base: uc22\nfirst-bytes: 2m\nstages: [{name: seeding, timeout: 2m}, {name: install-boot, timeout: 2m}, {name: run-boot, timeout: 2m}]\n")
}

// hangProfile is quickProfile with a short seeding timeout: the timeout
// under test, for a board that stops before seeding. Only that timeout is
// short, so however loaded the machine is, it is the one that ends the
// boot.
func hangProfile(t *testing.T) *console.Profile {
	t.Helper()
	return parseProfile(t, "base: uc22\nfirst-bytes: 2m\nstages: [{name: seeding, timeout: 3s}, {name: install-boot, timeout: 2m}, {name: run-boot, timeout: 2m}]\n")
}

func watch(t *testing.T, b *sim.Board) console.Verdict {
	t.Helper()
	return watchWith(t, b, quickProfile(t))
}

func watchWith(t *testing.T, b *sim.Board, p *console.Profile) console.Verdict {
	t.Helper()
	c, err := console.OpenConsole(context.Background(), &console.Capture{Path: b.ConsolePath(), Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b.PowerCycle()
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	return c.WatchBoot(ctx, p, time.Now(), nil)
}

// TestUMSBoardFlashBootRegister: the station's engine writes the board's
// disk, the board boots the image on its console like Ubuntu Core and
// registers; its serial verifies with the brand key.
func TestUMSBoardFlashBootRegister(t *testing.T) {
	k := newKit(t)
	b, bus := k.board(t, "SIM-UMS-1", sim.ModeUMS, sim.Faults{}, 1)
	devs, _ := bus.Devices()
	if len(devs) != 1 || devs[0].Kind != "disk" || devs[0].Serial != "SIM-UMS-1" {
		t.Fatalf("presence %+v", devs)
	}
	target, err := b.Target()
	if err != nil {
		t.Fatal(err)
	}
	if r := flash.Write(context.Background(), k.img, target, flash.Options{Verify: true}); r.Failure != nil || !r.Verified {
		t.Fatalf("flash %+v", r.Failure)
	}
	v := watch(t, b)
	if !v.Passed {
		t.Fatalf("boot %+v", v)
	}
	devs, _ = bus.Devices()
	if len(devs) != 1 || devs[0].Kind != "booted" {
		t.Errorf("after boot the board shows as %+v", devs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	s, err := b.WaitRegistered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Serial != "SIM-UMS-1" || !s.DeviceKey.Equal(vaulttest.TestKey(1).Public()) {
		t.Errorf("serial %+v", s)
	}
	if err := serialvault.Verify(s.Assertion, k.brandKey.Public()); err != nil {
		t.Error(err)
	}
}

// TestBadImagePanics: a board whose disk does not hold its image plays a
// failing boot the watcher recognises.
func TestBadImagePanics(t *testing.T) {
	k := newKit(t)
	b, _ := k.board(t, "SIM-BAD", sim.ModeUMS, sim.Faults{}, 1)
	v := watch(t, b) // nothing was written
	if v.Passed || v.Reason != console.ReasonKernelPanic || !strings.Contains(v.Detail, "Unable to mount root fs") {
		t.Errorf("%+v", v)
	}
}

// TestFaultsAreObservable checks each fault where the station sees it.
func TestFaultsAreObservable(t *testing.T) {
	k := newKit(t)
	flashFault := func(f sim.Faults, reason string) {
		t.Helper()
		b, _ := k.board(t, "SIM-F", sim.ModeUMS, f, 1)
		target, err := b.Target()
		if err != nil {
			t.Fatal(err)
		}
		r := flash.Write(context.Background(), k.img, target, flash.Options{Verify: true})
		if r.Failure == nil || r.Failure.Reason != reason {
			t.Errorf("%v: %+v", f, r.Failure)
		}
	}
	flashFault(sim.Faults{UnplugAfter: 1 << 20}, flash.ReasonUnplugged)
	flashFault(sim.Faults{WriteErrorAt: 2<<20 + 100}, flash.ReasonWriteError)

	b, _ := k.board(t, "SIM-SLOW", sim.ModeUMS, sim.Faults{SlowMBps: 8}, 1)
	target, _ := b.Target()
	r := flash.Write(context.Background(), k.img, target, flash.Options{})
	if r.Failure != nil || r.MBPerSec() > 10 {
		t.Errorf("slow medium: %.1f MB/s %v", r.MBPerSec(), r.Failure)
	}

	bootFault := func(f sim.Faults, p *console.Profile, reason string) {
		t.Helper()
		b, _ := k.board(t, "SIM-B", sim.ModeUMS, f, 1)
		target, _ := b.Target()
		flash.Write(context.Background(), k.img, target, flash.Options{})
		if v := watchWith(t, b, p); v.Passed || v.Reason != reason {
			t.Errorf("%v: verdict %s %q", f, v.Reason, v.Detail)
		}
	}
	bootFault(sim.Faults{KernelPanic: true}, quickProfile(t), console.ReasonKernelPanic)
	bootFault(sim.Faults{BootLoop: true}, quickProfile(t), console.ReasonBootLoop)
	bootFault(sim.Faults{SeedError: true}, quickProfile(t), console.ReasonSeedError)
	bootFault(sim.Faults{Garbage: true}, quickProfile(t), console.ReasonBaudMismatch)
	bootFault(sim.Faults{HangAt: "seeding"}, hangProfile(t), console.ReasonStageTimeout)
}

// TestFastbootBoard: our fastboot host flashes the board over TCP, the
// reboot boots it, it registers, and the console capture reads its serial.
func TestFastbootBoard(t *testing.T) {
	k := newKit(t)
	b, bus := k.board(t, "SIM-FB-1", sim.ModeFastboot, sim.Faults{}, 2)
	devs, _ := bus.Devices()
	if len(devs) != 1 || !devs[0].Fastboot {
		t.Fatalf("presence %+v", devs)
	}
	c, err := console.OpenConsole(context.Background(), &console.Capture{Path: b.ConsolePath()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	job, err := flash.OpenJob(context.Background(), "fastboot:tcp:"+b.FastbootAddr(), flash.TargetOptions{Reboot: true})
	if err != nil {
		t.Fatal(err)
	}
	r := job.Run(context.Background(), k.img, flash.Options{})
	job.Close()
	if r.Failure != nil {
		t.Fatal(r.Failure)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	if v := c.WatchBoot(ctx, quickProfile(t), time.Now(), nil); !v.Passed {
		t.Fatalf("%+v", v)
	}
	if _, err := b.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	text, err := console.CaptureSerial(ctx, c, console.LoginOptions{User: "factory", Password: secretOf("pw"), Poll: 50 * time.Millisecond, Step: ceiling})
	if err != nil {
		t.Fatal(err)
	}
	a, err := serialvault.Decode(text)
	if err != nil || serialvault.Verify(a, k.brandKey.Public()) != nil || a.HeaderString("serial") != "SIM-FB-1" {
		t.Errorf("captured %v %s", err, text)
	}
}

func TestDebianFastbootAgainstBoard(t *testing.T) {
	bin, err := exec.LookPath("fastboot")
	if err != nil {
		t.Skip("fastboot not installed (apt-get install fastboot)")
	}
	k := newKit(t)
	b, _ := k.board(t, "SIM-DEB-1", sim.ModeFastboot, sim.Faults{}, 2)
	c, err := console.OpenConsole(context.Background(), &console.Capture{Path: b.ConsolePath()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run := func(args ...string) string {
		out, err := exec.Command(bin, append([]string{"-s", "tcp:" + b.FastbootAddr()}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("fastboot %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("getvar", "serialno"); !strings.Contains(out, "serialno: SIM-DEB-1") {
		t.Errorf("%s", out)
	}
	if out := run("getvar", "max-download-size"); !strings.Contains(out, "max-download-size: 0x") {
		t.Errorf("%s", out)
	}
	run("flash", "mmc0", k.raw)
	run("reboot")
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	if v := c.WatchBoot(ctx, quickProfile(t), time.Now(), nil); !v.Passed {
		t.Fatalf("after fastboot flash and reboot: %+v", v)
	}
}

// TestBench builds a simulated bench: the station file it writes is valid
// and describes the boards on their ports.
func TestBench(t *testing.T) {
	dir := t.TempDir()
	b, err := sim.NewBench(context.Background(), sim.BenchConfig{Dir: dir, Boards: 4, FastKeys: true, ImageSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st, problems, err := lines.LoadValid(b.ConfigPath)
	if err != nil {
		t.Fatalf("%v\n%v", err, problems)
	}
	if len(st.Slots) != 4 || len(st.Lines) != 2 {
		t.Fatalf("%d slots %d lines", len(st.Slots), len(st.Lines))
	}
	devs, _ := b.Devices()
	if len(devs) != 4 {
		t.Errorf("devices %+v", devs)
	}
	for _, f := range []string{"vault-key.pub", "station.yaml", "image.img.zst", "model.assert"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "vault-key.pub"))
	if k, err := serialvault.DecodePublicKey(pub); err != nil || k.Bits() != 2048 {
		t.Errorf("vault key %v", err)
	}
}

// TestPowerSwitch: a hub port switched off takes the board off the bus
// and ends its boot; switched on, it boots from storage (its console
// speaks, it shows as the booted system). A board that keeps its power
// never leaves the bus; one that stays off never comes back.
func TestPowerSwitch(t *testing.T) {
	k := newKit(t)
	for _, tc := range []struct {
		name      string
		faults    sim.Faults
		offShows  bool   // still on the bus with the port off
		offState  string // the board's state with the port off
		backState string // its state once the port is on again ("": booting or booted)
	}{
		{name: "per-port switching", offState: sim.StateOff},
		{name: "keeps power", faults: sim.Faults{KeepsPower: true}, offShows: true, offState: sim.StateFlashMode, backState: sim.StateFlashMode},
		{name: "stays off", faults: sim.Faults{StaysOff: true}, offState: sim.StateOff, backState: sim.StateOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, bus := k.board(t, "SIM-PWR", sim.ModeUMS, tc.faults, 1)
			target, _ := b.Target()
			if r := flash.Write(context.Background(), k.img, target, flash.Options{}); r.Failure != nil {
				t.Fatal(r.Failure)
			}
			c, err := console.OpenConsole(context.Background(), &console.Capture{Path: b.ConsolePath(), Baud: 115200})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			b.PowerOff()
			devs, _ := bus.Devices()
			if shows := len(devs) == 1; shows != tc.offShows || b.State() != tc.offState {
				t.Fatalf("port off: devices %+v, state %s", devs, b.State())
			}
			on := time.Now()
			b.PowerOn()
			ctx, cancel := context.WithTimeout(context.Background(), ceiling)
			defer cancel()
			if tc.backState != "" {
				devs, _ = bus.Devices()
				if b.State() != tc.backState || len(devs) != map[bool]int{true: 1}[tc.offShows] {
					t.Errorf("port on: state %s, devices %+v", b.State(), devs)
				}
				return
			}
			if err := c.AwaitOutput(ctx, on); err != nil {
				t.Fatal(err)
			}
			devs, _ = bus.Devices()
			if len(devs) != 1 || devs[0].Kind != "booted" || devs[0].Serial != "SIM-PWR" {
				t.Errorf("after power on the board shows as %+v", devs)
			}
			// Off in the middle of the boot: the boot ends, the board leaves
			// the bus; on again, it boots afresh to its end.
			b.PowerOff()
			devs, _ = bus.Devices()
			if len(devs) != 0 || b.State() != sim.StateOff {
				t.Fatalf("off mid-boot: devices %+v, state %s", devs, b.State())
			}
			b.PowerOn()
			if err := b.WaitBooted(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
