package console_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/flashstation/flashstation/console"
)

// board is the far end of a pseudo-terminal standing in for a board's
// console; link is a stable name (like /dev/serial/by-id) for its slave.
type board struct {
	master *os.File
	slave  *os.File
	link   string
}

func newBoard(t *testing.T, link string) *board {
	t.Helper()
	m, s, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if link == "" {
		link = filepath.Join(t.TempDir(), "console")
	}
	os.Remove(link)
	if err := os.Symlink(s.Name(), link); err != nil {
		t.Fatal(err)
	}
	b := &board{master: m, slave: s, link: link}
	t.Cleanup(b.unplug)
	return b
}

func (b *board) unplug() {
	b.master.Close()
	b.slave.Close()
}

// play writes data to the console, paced at baud (0: full speed).
func (b *board) play(data []byte, baud int) {
	if baud == 0 {
		b.master.Write(data)
		return
	}
	const chunk = 64
	perChunk := time.Duration(float64(chunk) * 10 / float64(baud) * float64(time.Second))
	start := time.Now()
	for i := 0; i < len(data); i += chunk {
		b.master.Write(data[i:min(i+chunk, len(data))])
		if d := time.Until(start.Add(perChunk * time.Duration(i/chunk+1))); d > 0 {
			time.Sleep(d)
		}
	}
}

func openConsole(t *testing.T, path string, tr *console.Transcript) *console.Console {
	t.Helper()
	c, err := console.OpenConsole(context.Background(), &console.Capture{Path: path, Baud: 115200, Transcript: tr, Reopen: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCompositeOverPty(t *testing.T) {
	for _, baud := range []int{0, 115200} {
		t.Run(map[int]string{0: "full speed", 115200: "paced at 115200"}[baud], func(t *testing.T) {
			if baud != 0 && testing.Short() {
				t.Skip("takes two seconds")
			}
			b := newBoard(t, "")
			trPath := filepath.Join(t.TempDir(), "console.raw")
			tr, err := console.CreateTranscript(trPath)
			if err != nil {
				t.Fatal(err)
			}
			c := openConsole(t, b.link, tr)
			data := composite(t)
			go b.play(data, baud)
			var stages []string
			v := c.WatchBoot(context.Background(), profile(t, "uc20"), time.Now(), func(e console.Event) {
				if e.Kind == console.EventStage {
					stages = append(stages, e.Stage)
				}
			})
			if !v.Passed {
				t.Fatalf("verdict %+v", v)
			}
			if strings.Join(stages, " ") != "first-bytes bootloader install-boot run-boot seeding console-ready" {
				t.Errorf("stages %v", stages)
			}
			if baud != 0 && v.Elapsed < time.Second {
				t.Errorf("paced boot took only %v", v.Elapsed)
			}
			c.Close()
			tr.Close()
			f, _ := os.Open(trPath)
			defer f.Close()
			recs, err := console.ReadTranscript(f)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			for _, r := range recs {
				if r.Dir == '<' {
					got = append(got, r.Data...)
				}
			}
			if !bytes.HasPrefix(data, got) || len(got) < len(data)*9/10 {
				t.Errorf("transcript holds %d of %d bytes, or differs", len(got), len(data))
			}
			var clean bytes.Buffer
			console.RenderClean(recs, &clean)
			if !strings.Contains(clean.String(), "] [  OK  ] Started Journal Service.") || strings.Contains(clean.String(), "\x1b") {
				t.Errorf("clean rendering:\n%s", clean.String()[:500])
			}
		})
	}
}

// TestUnpluggedAndBack unplugs the console adapter in the middle of the
// boot; it comes back (same stable name, a new device) and the boot still
// passes, with the gap marked.
func TestUnpluggedAndBack(t *testing.T) {
	b1 := newBoard(t, "")
	c := openConsole(t, b1.link, nil)
	data := composite(t)
	half := bytes.Index(data, []byte("Starting Reboot..."))
	var gaps []string
	done := make(chan console.Verdict, 1)
	go func() {
		done <- c.WatchBoot(context.Background(), profile(t, "uc20"), time.Now(), func(e console.Event) {
			if e.Kind == console.EventGap {
				gaps = append(gaps, e.Detail)
			}
		})
	}()
	b1.play(data[:half], 0)
	time.Sleep(200 * time.Millisecond)
	b1.unplug()
	time.Sleep(100 * time.Millisecond)
	b2 := newBoard(t, b1.link)
	time.Sleep(200 * time.Millisecond)
	b2.play(data[half:], 0)
	select {
	case v := <-done:
		if !v.Passed {
			t.Fatalf("verdict %+v", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict")
	}
	if strings.Join(gaps, ",") != "console disconnected,console reconnected" {
		t.Errorf("gaps %v", gaps)
	}
}

func TestPortErrors(t *testing.T) {
	_, err := console.OpenConsole(context.Background(), &console.Capture{Path: filepath.Join(t.TempDir(), "nothing")})
	var pe *console.PortError
	if !errorsAs(err, &pe) || pe.Reason != console.ReasonPortMissing || !strings.Contains(err.Error(), "plugged in") {
		t.Errorf("missing port: %v", err)
	}
	b := newBoard(t, "")
	openConsole(t, b.link, nil)
	_, err = console.OpenConsole(context.Background(), &console.Capture{Path: b.link})
	if !errorsAs(err, &pe) || pe.Reason != console.ReasonPortBusy {
		t.Errorf("second open: %v", err)
	}
}
