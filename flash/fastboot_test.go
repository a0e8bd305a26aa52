package flash_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/flash/fastboottest"
)

// memWriterAt is a growing in-memory disk.
type memWriterAt struct{ b []byte }

func (m *memWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if need := off + int64(len(p)); need > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, need-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

// TestSparseRoundTrip encodes the image as sparse pieces of several sizes
// and applies them in turn: the result holds every mapped byte.
func TestSparseRoundTrip(t *testing.T) {
	raw, content := sharedImage(t)
	img := prepare(t, newCache(t), flash.ImageSpec{Path: raw})
	src, _ := os.Open(img.RawPath)
	defer src.Close()
	for _, max := range []int64{64 << 10, 1 << 20, 3<<20 + 12345, 256 << 20} {
		pieces, err := flash.PlanSparse(img, max)
		if err != nil {
			t.Fatal(err)
		}
		disk := &memWriterAt{b: make([]byte, imageSize)}
		var raw int64
		for i, p := range pieces {
			var buf bytes.Buffer
			n, err := p.WriteTo(&buf, src, img.Size)
			if err != nil || n != p.Size() || int64(buf.Len()) != p.Size() {
				t.Fatalf("piece %d: wrote %d, size %d, %v", i, n, p.Size(), err)
			}
			if p.Size() > max {
				t.Fatalf("piece %d is %d bytes, over %d", i, p.Size(), max)
			}
			if !flash.IsSparse(buf.Bytes()) {
				t.Fatal("no sparse magic")
			}
			if _, err := flash.ApplySparse(&buf, disk, 1<<30); err != nil {
				t.Fatalf("piece %d: %v", i, err)
			}
			raw += p.RawBytes
		}
		if raw < img.MappedBytes {
			t.Errorf("max %d: pieces carry %d bytes of %d mapped", max, raw, img.MappedBytes)
		}
		if i := firstDiff(disk.b[:imageSize], content); i >= 0 {
			t.Errorf("max %d: differs at %d", max, i)
		}
		if max == 1<<20 && len(pieces) < 8 {
			t.Errorf("1 MiB pieces: only %d", len(pieces))
		}
	}
}

func TestApplySparseRejects(t *testing.T) {
	raw, _ := sharedImage(t)
	img := prepare(t, newCache(t), flash.ImageSpec{Path: raw})
	src, _ := os.Open(img.RawPath)
	defer src.Close()
	pieces, _ := flash.PlanSparse(img, 1<<30)
	var buf bytes.Buffer
	pieces[0].WriteTo(&buf, src, img.Size)
	good := buf.Bytes()
	for _, tc := range []struct {
		name string
		data []byte
		max  int64
		want string
	}{
		{"too large for the partition", good, 1 << 20, "does not fit"},
		{"truncated", good[:len(good)/2], 1 << 30, "chunk"},
		{"not sparse", []byte("hello world, this is not sparse at all"), 1 << 30, "not a sparse image"},
		{"bad chunk type", func() []byte {
			b := append([]byte(nil), good...)
			b[28] = 0x99
			return b
		}(), 1 << 30, "unknown type"},
	} {
		if _, err := flash.ApplySparse(bytes.NewReader(tc.data), &memWriterAt{}, tc.max); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func startDevice(t *testing.T, cfg fastboottest.Config) *fastboottest.Device {
	t.Helper()
	if cfg.Storage == "" {
		cfg.Storage = filepath.Join(t.TempDir(), "emmc.img")
		if err := os.WriteFile(cfg.Storage, bytes.Repeat([]byte{0xee}, 32<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := fastboottest.Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func dial(t *testing.T, d *fastboottest.Device) *flash.FastbootClient {
	t.Helper()
	tr, err := flash.DialFastbootTCP(context.Background(), d.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c := flash.NewFastbootClient(tr)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestFastbootTCP flashes the image to an in-test fastboot device whose
// download buffer forces several sparse pieces, then reboots it.
func TestFastbootTCP(t *testing.T) {
	raw, content := sharedImage(t)
	img := prepare(t, newCache(t), flash.ImageSpec{Path: raw})
	rebooted := make(chan string, 1)
	d := startDevice(t, fastboottest.Config{Serial: "FB123", MaxDownload: 1 << 20, OnReboot: func(k string) { rebooted <- k }})
	c := dial(t, d)
	ctx := context.Background()
	if s, err := c.GetVar(ctx, "serialno"); err != nil || s != "FB123" {
		t.Fatalf("serialno %q %v", s, err)
	}
	if _, err := c.GetVar(ctx, "nonsense"); err == nil || !strings.Contains(err.Error(), "FAILED") {
		t.Errorf("unknown var: %v", err)
	}
	var progress []flash.Progress
	res := flash.FlashFastboot(ctx, img, c, flash.FastbootFlashOptions{Name: "fastboot:tcp:" + d.Addr(),
		Options: flash.Options{ProgressEvery: 1, Progress: func(p flash.Progress) { progress = append(progress, p) }}})
	if res.Failure != nil {
		t.Fatal(res.Failure)
	}
	if res.Verified || !strings.Contains(res.VerifyNote, "device-side verification not available") {
		t.Errorf("fastboot result claims verification: %+v", res)
	}
	if n := len(d.Flashed()); n < 4 || !strings.HasSuffix(d.Flashed()[0], "(sparse)") {
		t.Errorf("flashed %v: want several sparse pieces", d.Flashed())
	}
	if len(progress) == 0 || progress[len(progress)-1].Done != img.MappedBytes {
		t.Errorf("progress %v", progress)
	}
	if _, err := c.Command(ctx, "reboot"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rebooted:
	case <-time.After(2 * time.Minute): // only turns a hang into a failure
		t.Fatal("device not rebooted")
	}
	storage, _ := os.ReadFile(d.Storage())
	for _, r := range testRegions {
		if r.zero {
			continue // without a bmap, zeros are not mapped
		}
		if i := firstDiff(storage[r.off:r.off+r.length], content[r.off:r.off+r.length]); i >= 0 {
			t.Errorf("region at %d differs at +%d", r.off, i)
		}
	}
	if storage[8<<20] != 0xee {
		t.Error("an unmapped range was sent")
	}
}

func TestFastbootFailures(t *testing.T) {
	raw, _ := sharedImage(t)
	img := prepare(t, newCache(t), flash.ImageSpec{Path: raw})
	ctx := context.Background()

	small := filepath.Join(t.TempDir(), "small.img")
	os.WriteFile(small, make([]byte, 8<<20), 0o644)
	d := startDevice(t, fastboottest.Config{Storage: small})
	if r := flash.FlashFastboot(ctx, img, dial(t, d), flash.FastbootFlashOptions{}); r.Failure == nil || r.Failure.Reason != flash.ReasonTooSmall {
		t.Errorf("small partition: %+v", r.Failure)
	}

	bad := startDevice(t, fastboottest.Config{FailWriteAt: 10 << 20})
	r := flash.FlashFastboot(ctx, img, dial(t, bad), flash.FastbootFlashOptions{})
	if r.Failure == nil || r.Failure.Reason != flash.ReasonFastboot || !strings.Contains(r.Failure.Detail, "mmc write failed") {
		t.Errorf("write failure: %+v", r.Failure)
	}
	if r := flash.FlashFastboot(ctx, img, dial(t, bad), flash.FastbootFlashOptions{Partition: "boot"}); r.Failure == nil || !strings.Contains(r.Failure.Detail, "partition not found") {
		t.Errorf("unknown partition: %+v", r.Failure)
	}

	// Unplugged mid-download: the device goes away once it received 3 MiB,
	// in the middle of the second 2 MiB download.
	unplugged := make(chan struct{})
	gone := startDevice(t, fastboottest.Config{MaxDownload: 2 << 20, UnplugAfter: 3 << 20, OnUnplug: func() { close(unplugged) }})
	c := dial(t, gone)
	if r := flash.FlashFastboot(ctx, img, c, flash.FastbootFlashOptions{}); r.Failure == nil || r.Failure.Reason != flash.ReasonUnplugged {
		t.Errorf("unplugged: %+v", r.Failure)
	}
	select {
	case <-unplugged: // the device pulls itself out just after dropping the link
	case <-time.After(2 * time.Minute):
		t.Fatal("the device was never unplugged")
	}
	if n := len(gone.Flashed()); n != 1 {
		t.Errorf("flashed %v before the unplug, want the first piece only", gone.Flashed())
	}
}

// TestDebianFastbootClient drives the in-test device with the real
// fastboot client.
func TestDebianFastbootClient(t *testing.T) {
	bin, err := exec.LookPath("fastboot")
	if err != nil {
		t.Skip("fastboot not installed (apt-get install fastboot)")
	}
	// fastboot's libsparse needs a whole number of 4 KiB blocks.
	_, content := sharedImage(t)
	content = append(content[:len(content):len(content)], make([]byte, 4096-len(content)%4096)...)
	raw := filepath.Join(t.TempDir(), "aligned.img")
	os.WriteFile(raw, content, 0o644)
	d := startDevice(t, fastboottest.Config{Serial: "DEB-0001", MaxDownload: 8 << 20})
	target := "tcp:" + d.Addr()
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, append([]string{"-s", target}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("fastboot %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("getvar", "serialno"); !strings.Contains(out, "serialno: DEB-0001") {
		t.Errorf("getvar: %s", out)
	}
	out := run("flash", "mmc0", raw)
	if !strings.Contains(out, "Finished") {
		t.Errorf("flash: %s", out)
	}
	storage, _ := os.ReadFile(d.Storage())
	if i := firstDiff(storage[:len(content)], content); i >= 0 {
		t.Errorf("storage differs at %d after fastboot flash", i)
	}
	if len(d.Flashed()) < 2 {
		t.Errorf("fastboot sent %v (want it to split the image)", d.Flashed())
	}
	run("reboot")
}

// TestFastbootTCPHungBoard: a board that stops answering mid-flash ends
// its job within the exchange timeout, naming the command; a stop while it
// hangs ends the job as cancelled. The connection is only closed by its
// owner afterwards.
func TestFastbootTCPHungBoard(t *testing.T) {
	raw, _ := sharedImage(t)
	img := prepare(t, newCache(t), flash.ImageSpec{Path: raw})
	t.Run("timeout", func(t *testing.T) {
		d := startDevice(t, fastboottest.Config{HangOn: "flash:"})
		job, err := flash.OpenJob(context.Background(), "fastboot:tcp:"+d.Addr(), flash.TargetOptions{FastbootTimeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer job.Close()
		res := job.Run(context.Background(), img, flash.Options{})
		var te *flash.TimeoutError
		if res.Failure == nil || res.Failure.Reason != flash.ReasonFastboot || !errors.As(res.Failure.Err, &te) ||
			!strings.Contains(res.Failure.Detail, "fastboot flash:mmc0: the device did not answer within 200ms (hung)") {
			t.Errorf("hung board: %+v", res.Failure)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		d := startDevice(t, fastboottest.Config{HangOn: "flash:", OnHang: func(string) { cancel() }})
		job, err := flash.OpenJob(ctx, "fastboot:tcp:"+d.Addr(), flash.TargetOptions{FastbootTimeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		res := job.Run(ctx, img, flash.Options{})
		if res.Failure == nil || res.Failure.Reason != flash.ReasonCancelled || !errors.Is(res.Failure.Err, context.Canceled) {
			t.Errorf("stopped: %+v", res.Failure)
		}
		if err := job.Close(); err != nil {
			t.Errorf("close after a stop: %v (the stop must not have closed it)", err)
		}
	})
}
