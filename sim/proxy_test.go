package sim_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/secret"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/sim"
	"github.com/flashstation/flashstation/usb/usbtest"
)

// TestProxySeesRefusalAndDuplicate registers boards through the
// recording proxy: a board with a stale request-id is refused by the
// station (the vault never sees it) and never registers; two boards with one hardware serial give a duplicate.
func TestProxySeesRefusalAndDuplicate(t *testing.T) {
	k := newKit(t)
	led, err := ledger.Open(context.Background(), filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	led.EnsureStation(context.Background(), ledger.Station{ID: "s"})
	led.EnsureLine(context.Background(), ledger.Line{ID: "line1", StationID: "s"})
	ring := serialvault.NewKeyRing()
	ring.Add(serialvault.TrustedKey{Key: k.brandKey.Public(), AccountID: "acme"})
	client, _ := serialvault.NewClient(k.url, serialvault.ClientOptions{APIKey: secret.New("key"), Attempts: 1})
	var mu sync.Mutex
	var captures []serialvault.Capture
	refusals := make(chan serialvault.Refusal, 16)
	windows := serialvault.NewWindows(true)
	open := func(serial string) *serialvault.Window {
		w, err := windows.Open(serialvault.WindowSpec{Slot: "A1", Expected: serial})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		return w
	}
	proxy, err := serialvault.NewProxy(serialvault.ProxyConfig{LineID: "line1", BrandID: "acme", Model: "acme-gw-sim", Keys: ring,
		Vault: client, Recorder: led, Logger: zerolog.Nop(), Windows: windows,
		OnCapture: func(c serialvault.Capture) { mu.Lock(); captures = append(captures, c); mu.Unlock() },
		OnRefusal: func(r serialvault.Refusal) {
			select {
			case refusals <- r:
			default: // enough seen; OnRefusal must not block
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(proxy)
	defer srv.Close()

	boot := func(serial string, f sim.Faults, key int) *sim.Board {
		bus := &usbtest.Bus{}
		b, err := sim.NewBoard(sim.BoardConfig{Serial: serial, Storage: filepath.Join(t.TempDir(), "emmc"), DiskSize: 16 << 20,
			Port: "1-1.1", Presence: bus, Speed: 500, Expect: k.img, Model: k.model, DeviceService: srv.URL + "/v1/",
			Key: keyOf(key), Faults: f})
		if err != nil {
			t.Fatal(err)
		}
		b.Start(context.Background())
		t.Cleanup(b.Close)
		target, _ := b.Target()
		flash.Write(context.Background(), k.img, target, flash.Options{})
		c, _ := console.OpenConsole(context.Background(), &console.Capture{Path: b.ConsolePath()})
		t.Cleanup(func() { c.Close() })
		b.PowerCycle()
		ctx, cancel := context.WithTimeout(context.Background(), ceiling)
		defer cancel()
		if v := c.WatchBoot(ctx, quickProfile(t), time.Now(), nil); !v.Passed {
			t.Fatalf("%s: %+v", serial, v)
		}
		return b
	}
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	w := open("DUP-0001")
	first := boot("DUP-0001", sim.Faults{}, 1)
	if _, err := first.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	w.Close()
	open("DUP-0001")
	second := boot("DUP-0001", sim.Faults{}, 2)
	s2, err := second.WaitRegistered(ctx)
	if err != nil || s2.Revision() != 2 {
		t.Fatalf("duplicate: %v %v", s2, err)
	}
	mu.Lock()
	if len(captures) != 2 || !captures[1].Duplicate || captures[1].DeviceKeyID != keyOf(2).Public().ID() {
		t.Errorf("captures %+v", captures)
	}
	mu.Unlock()

	open("REF-0001")
	refused := boot("REF-0001", sim.Faults{VaultRefuses: true}, 3)
	// The board asks again after each refusal: wait for two of them.
	for n := 0; n < 2; {
		select {
		case r := <-refusals:
			if r.Serial != "REF-0001" || r.Code != "invalid-nonce" || r.By != serialvault.RefusedByStation {
				t.Fatalf("refusal %+v", r)
			}
			n++
		case <-ctx.Done():
			t.Fatalf("%d refusals of REF-0001 seen; proxy stats %+v", n, proxy.Stats())
		}
	}
	if st := proxy.Stats(); st.BadNonce < 2 || st.VaultErrors != 0 {
		t.Errorf("proxy stats %+v: stale request-ids must be refused by the station, never sent to the vault", st)
	}
	if s, _ := refused.Registered(); s != nil {
		t.Error("a refused board registered")
	}
	as, _ := led.SerialAssertions(context.Background(), ledger.AssertionFilter{})
	if len(as) != 2 {
		t.Errorf("%d assertions recorded", len(as))
	}
}

// TestConsoleTrigger boots a board from U-Boot's prompt: Ctrl-C leaves
// ums mode and `reset` boots the board.
func TestConsoleTrigger(t *testing.T) {
	k := newKit(t)
	b, _ := k.board(t, "SIM-CON-1", sim.ModeUMS, sim.Faults{}, 1)
	target, _ := b.Target()
	flash.Write(context.Background(), k.img, target, flash.Options{})
	c, err := console.OpenConsole(context.Background(), &console.Capture{Path: b.ConsolePath()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Send("\x03")
	c.Send("reset\r")
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	if v := c.WatchBoot(ctx, quickProfile(t), time.Now(), nil); !v.Passed {
		t.Fatalf("%+v", v)
	}
}
