package armimage

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashstation/flashstation/internal/armimage/seedconf"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

// guestTimeout bounds a guest test's boot, registration and login.
const guestTimeout = 70 * time.Second

const (
	guestBrand  = "acme"
	guestModel  = "qemu-armhf"
	guestAPIKey = "line-api-key"
)

// vaultBench is a vault double on the host loopback, the device service
// the guest reaches through guestfwd, with its events for the test: every
// answered /v1/serial is sent on signed, and /v1/serial requests wait
// while hold is open.
type vaultBench struct {
	vault    *vaulttest.Vault
	brandKey *serialvault.PrivateKey
	model    *serialvault.Assertion
	url      string        // as the host reaches it
	signed   chan struct{} // one per answered serial request
	hold     chan struct{} // closed: serial requests go through
	arrived  chan struct{} // one per serial request, before it waits on hold
}

func startVault(t *testing.T, holdSerial bool) *vaultBench {
	t.Helper()
	vb := &vaultBench{brandKey: vaulttest.TestKey(0), signed: make(chan struct{}, 16), hold: make(chan struct{}), arrived: make(chan struct{}, 16)}
	if !holdSerial {
		close(vb.hold)
	}
	vb.vault = vaulttest.New(vaulttest.Options{Models: []vaulttest.Model{{BrandID: guestBrand, Model: guestModel, APIKey: guestAPIKey, Key: vb.brandKey}}})
	var err error
	vb.model, err = serialvault.Sign(map[string]any{
		"type": "model", "authority-id": guestBrand, "series": "16", "brand-id": guestBrand, "model": guestModel,
		"architecture": "armhf", "base": "core22", "grade": "signed", "timestamp": "2026-01-01T00:00:00Z",
	}, nil, vb.brandKey, time.Now())
	must(t, err)
	h := vb.vault.Handler()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/serial" {
			h.ServeHTTP(w, r)
			return
		}
		vb.arrived <- struct{}{}
		select {
		case <-vb.hold:
		case <-r.Context().Done():
			return
		}
		h.ServeHTTP(w, r)
		vb.signed <- struct{}{}
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	vb.url = "http://" + l.Addr().String() + "/v1/"
	return vb
}

// wait waits for one event on ch.
func wait(ctx context.Context, t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatalf("waiting for %s: %v", what, ctx.Err())
	}
}

// guestImage builds the image with the vault's model (signed by a key
// made for this process, so cached only in a temporary directory; the
// board idles once ready) and returns a copy to boot.
func guestImage(t *testing.T, a qemuAssets, model *serialvault.Assertion) string {
	t.Helper()
	disk, _ := bootableImage(t, a, Config{Model: model.Encode(), Fault: seedconf.FaultNone, CacheDir: t.TempDir()})
	return disk
}

// guestBoard boots a board with id (its device service vb, reached
// through guestfwd) on disk.
func guestBoard(t *testing.T, a qemuAssets, vb *vaultBench, disk string, id Identity) *qemuBoard {
	t.Helper()
	guestURL, hostAddr, err := GuestServiceURL(vb.url)
	must(t, err)
	id.DeviceService = guestURL
	id.Headers = map[string]string{"api-key": guestAPIKey}
	q, err := QEMU{Disk: disk, Proxy: hostAddr}.WithIdentity(t.TempDir(), id)
	must(t, err)
	args, err := q.Args()
	must(t, err)
	if got := strings.Join(args, " "); strings.Count(got, "guestfwd=") != 1 || !strings.Contains(got, "restrict=on") {
		t.Fatalf("QEMU's network is not restricted to one guestfwd: %s", got)
	}
	return bootQEMU(t, a, q)
}

// checkSigned checks the vault's signing log holds exactly one serial, for
// this board.
func checkSigned(t *testing.T, vb *vaultBench, id Identity) {
	t.Helper()
	log := vb.vault.SigningLog()
	if len(log) != 1 {
		t.Fatalf("the vault signed %d serials, want 1: %+v", len(log), log)
	}
	e := log[0]
	if e.Make != guestBrand || e.Model != guestModel || e.SerialNumber != id.Serial || e.Fingerprint != id.Key.Public().ID() {
		t.Errorf("the vault signed %+v, want %s/%s serial %s key %s", e, guestBrand, guestModel, id.Serial, id.Key.Public().ID())
	}
}

// send types text on the console.
func (b *qemuBoard) send(t *testing.T, text string) {
	t.Helper()
	if _, err := b.tty.WriteString(text); err != nil {
		t.Fatalf("typing %q: %v", text, err)
	}
}

// exchange types a command line and returns what the board printed up to
// an echoed end marker, as the station frames its commands.
func (b *qemuBoard) exchange(ctx context.Context, t *testing.T, cmd string, n int) string {
	t.Helper()
	end := fmt.Sprintf("FSEND-%012x", n)
	b.send(t, cmd+"; echo "+end+"\n")
	b.con.mu.Lock()
	from := b.con.cursor
	b.con.mu.Unlock()
	// The echo of the typed line carries the marker too: wait for it as
	// its own output line.
	if _, err := b.con.waitFor(ctx, "\r\n"+end+"\r\n"); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	b.con.mu.Lock()
	defer b.con.mu.Unlock()
	return string(b.con.buf[from:b.con.cursor])
}

func TestQEMUBoardRegistersAndLogsIn(t *testing.T) {
	t.Parallel() // at most GOMAXPROCS boots at once
	a := needQEMU(t)
	vb := startVault(t, true)
	disk := guestImage(t, a, vb.model)
	id := Identity{Serial: "QA-0001", Key: vaulttest.TestKey(1), ConsoleUser: "factory", ConsolePassword: "s3cret-pw"}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	b := guestBoard(t, a, vb, disk, id)
	b.expect(ctx, t, [][2]string{
		{"u-boot", "U-Boot 2023.01"},
		{"install boot", "Installing the system, please wait for reboot"},
		{"reboot", "reboot: Restarting system"},
		{"run mode", "snapd_recovery_mode=run"},
		{"init", "Run /init as init process"},
		{"run boot", "Welcome to Ubuntu Core 22!"},
		{"seeded", "Mark system seeded"},
		{"ready", "Ubuntu Core 22 on 10.0.2.15 (ttyAMA0)\r\n\r\nubuntu login: "},
	})
	// The network is up before the seeding: the kernel's link line does
	// not land after the login prompt.
	if text := b.con.text(); strings.Contains(text, "link becomes ready") && strings.Index(text, "link becomes ready") > strings.LastIndex(text, "Mark system seeded") {
		t.Error("the kernel's link line came after the seeding")
	}
	wait(ctx, t, vb.arrived, "the board's serial request")
	t.Logf("%7.2fs  serial request at the vault", time.Since(b.con.start).Seconds())

	// The station's console capture: user, password at its prompt, a
	// marker echoed, snap changes until Initialize device is done, the
	// assertion between markers, exit.
	loginStart := time.Now()
	b.send(t, id.ConsoleUser+"\n")
	b.expect(ctx, t, [][2]string{{"password prompt", "factory\r\nPassword: "}})
	b.send(t, id.ConsolePassword+"\n")
	b.expect(ctx, t, [][2]string{{"shell", "factory@ubuntu:~$ "}})
	if out := b.exchange(ctx, t, "echo FSSHELL-0123456789ab", 1); !strings.Contains(out, "\r\nFSSHELL-0123456789ab\r\n") {
		t.Fatalf("the shell did not echo the marker: %q", out)
	}
	if out := b.exchange(ctx, t, "snap changes", 2); !regexp.MustCompile(`Doing +today.*Initialize device`).MatchString(out) {
		t.Errorf("snap changes before the registration: %q", out)
	}
	if out := b.exchange(ctx, t, "snap model --serial --assertion", 3); !strings.Contains(out, "\r\nerror: device not registered yet\r\n") {
		t.Errorf("the assertion before the registration: %q", out)
	}
	t.Logf("logged in and asked in %v", time.Since(loginStart))

	close(vb.hold)
	wait(ctx, t, vb.signed, "the vault's signature")
	t.Logf("%7.2fs  serial signed", time.Since(b.con.start).Seconds())
	checkSigned(t, vb, id)

	// snapd takes the answer in: poll as the station does (without its
	// pause: each exchange waits on the console).
	done := regexp.MustCompile(`(?m)^\d+\s+Done\s+.*\bInitialize device\s*\r?$`)
	for n := 4; ; n++ {
		if done.MatchString(b.exchange(ctx, t, "snap changes", n)) {
			break
		}
		if n > 200 {
			t.Fatal("Initialize device never done")
		}
	}
	out := b.exchange(ctx, t, "echo FSBEGIN-0123456789ab; snap model --serial --assertion", 1000)
	i := strings.Index(out, "\r\nFSBEGIN-0123456789ab\r\n")
	j := strings.LastIndex(out, "\r\nFSEND-")
	if i < 0 || j < i {
		t.Fatalf("no assertion between the markers: %q", out)
	}
	text := out[i+len("\r\nFSBEGIN-0123456789ab\r\n") : j+2]
	if strings.Contains(strings.ReplaceAll(text, "\r\n", ""), "\n") {
		t.Errorf("the assertion's lines do not end with \\r\\n: %q", text)
	}
	a2, err := serialvault.Decode([]byte(strings.ReplaceAll(text, "\r\n", "\n")))
	must(t, err)
	must(t, serialvault.Verify(a2, vb.brandKey.Public()))
	s, err := serialvault.AsSerial(a2)
	must(t, err)
	if s.Serial != id.Serial || s.Model != guestModel || s.BrandID != guestBrand || !s.DeviceKey.Equal(id.Key.Public()) {
		t.Errorf("the console's assertion is for %s/%s %s key %s", s.BrandID, s.Model, s.Serial, s.DeviceKeyID)
	}
	b.send(t, "logout\n")
	b.expect(ctx, t, [][2]string{{"logged out", "logout\r\n\r\nubuntu login: "}})
	t.Logf("login capture in %v", time.Since(loginStart))
	if strings.Contains(b.con.text(), id.ConsolePassword) {
		t.Error("the password shows on the console")
	}
	if v := b.stationVerdict(t); !v.Passed {
		t.Errorf("the station's uc22 profile fails the boot: %s: %s", v.Reason, v.Detail)
	}
}

func TestQEMUBoardReachesOnlyTheProxy(t *testing.T) {
	t.Parallel() // at most GOMAXPROCS boots at once
	a := needQEMU(t)
	vb := startVault(t, false)
	disk := guestImage(t, a, vb.model)
	// A host service the guest must not reach: without restrict=on,
	// 10.0.2.2:port would be this listener.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var accepted atomic.Int32
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-acceptDone
	})
	port := l.Addr().(*net.TCPAddr).Port
	hostSide := fmt.Sprintf("%s:%d", GatewayIP, port)
	id := Identity{Serial: "QA-0002", Key: vaulttest.TestKey(2), Probes: []string{ProxyGuestAddr, hostSide, "10.0.2.3:53", "1.1.1.1:80"}}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	b := guestBoard(t, a, vb, disk, id)
	b.expect(ctx, t, [][2]string{
		{"run mode", "snapd_recovery_mode=run"},
		{"init", "Run /init as init process"},
		{"run boot", "Welcome to Ubuntu Core 22!"},
		{"probe proxy", "probe " + ProxyGuestAddr + ": connected"},
		{"probe host", "probe " + hostSide + ": unreachable"},
		{"probe dns", "probe 10.0.2.3:53: unreachable"},
		{"probe outside", "probe 1.1.1.1:80: unreachable"},
		{"seeded", "Mark system seeded"},
		{"ready", "Press enter to configure."},
	})
	t.Cleanup(func() {
		t.Logf("vault requests: request-id %d serial %d", vb.vault.Requests("/v1/request-id"), vb.vault.Requests("/v1/serial"))
	})
	wait(ctx, t, vb.signed, "the vault's signature")
	t.Logf("%7.2fs  serial signed", time.Since(b.con.start).Seconds())
	checkSigned(t, vb, id)
	if n := accepted.Load(); n != 0 {
		t.Errorf("the guest reached the host's loopback %d times", n)
	}
	if v := b.stationVerdict(t); !v.Passed {
		t.Errorf("the station's uc22 profile fails the boot: %s: %s", v.Reason, v.Detail)
	}
}
