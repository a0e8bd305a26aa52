package console_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// ceiling bounds a wait on an event; it only turns a hang into a failure.
const ceiling = 2 * time.Minute

// playChunk is the size of the writes of a paced play.
const playChunk = 64

// perChunk is how long a paced play's chunk takes on the wire at baud.
func perChunk(baud int) time.Duration {
	return time.Duration(float64(playChunk) * 10 / float64(baud) * float64(time.Second))
}

// play writes data to the console at full speed.
func (b *board) play(data []byte) { b.master.Write(data) }

// playPaced writes data to the console like a line at baud: chunk k is
// written no earlier than start + k*perChunk(baud). The pacing only
// shapes the input, it decides no result: the test checks what follows
// from it (a verdict cannot come before its bytes were written).
func (b *board) playPaced(data []byte, baud int, start time.Time) {
	for k := 0; k*playChunk < len(data); k++ {
		if d := time.Until(start.Add(perChunk(baud) * time.Duration(k))); d > 0 {
			time.Sleep(d)
		}
		b.master.Write(data[k*playChunk : min((k+1)*playChunk, len(data))])
	}
}

func openConsole(t *testing.T, path string, tr *console.Transcript) *console.Console {
	t.Helper()
	return openConsoleWith(t, &console.Capture{Path: path, Baud: 115200, Transcript: tr, Reopen: 20 * time.Millisecond})
}

func openConsoleWith(t *testing.T, c *console.Capture) *console.Console {
	t.Helper()
	con, err := console.OpenConsole(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { con.Close() })
	return con
}

// probe is a console opener that reports what the capture does with the
// port: how many times it opened it and how many bytes it read, so a
// test waits for the capture itself rather than for a while.
type probe struct {
	mu    sync.Mutex
	opens int
	read  int
	more  chan struct{} // closed and replaced on each change
}

func newProbe() *probe { return &probe{more: make(chan struct{})} }

func (p *probe) change(f func()) {
	p.mu.Lock()
	f()
	close(p.more)
	p.more = make(chan struct{})
	p.mu.Unlock()
}

// open is a console.Opener.
func (p *probe) open(path string, baud int) (console.Port, error) {
	port, err := console.OpenSerial(path, baud)
	if err != nil {
		return nil, err
	}
	p.change(func() { p.opens++ })
	return probedPort{Port: port, p: p}, nil
}

// await waits until ok holds for the opens and bytes read so far.
func (p *probe) await(t *testing.T, what string, ok func(opens, read int) bool) {
	t.Helper()
	limit := time.After(ceiling)
	for {
		p.mu.Lock()
		opens, read, more := p.opens, p.read, p.more
		p.mu.Unlock()
		if ok(opens, read) {
			return
		}
		select {
		case <-more:
		case <-limit:
			t.Fatalf("%s: not after %s (%d opens, %d bytes read)", what, ceiling, opens, read)
		}
	}
}

type probedPort struct {
	console.Port
	p *probe
}

func (pp probedPort) Read(b []byte) (int, error) {
	n, err := pp.Port.Read(b)
	if n > 0 {
		pp.p.change(func() { pp.p.read += n })
	}
	return n, err
}

// earliestVerdict is when a boot playing data paced at baud can pass at
// the earliest: the machine is fed every byte at the time its chunk may be
// written, one byte at a time so that no read boundary could end a stage
// sooner.
func earliestVerdict(t *testing.T, p *console.Profile, data []byte, baud int) time.Duration {
	t.Helper()
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	m := console.NewMachine(p, t0)
	for i := range data {
		m.Feed(t0.Add(perChunk(baud)*time.Duration(i/playChunk)), data[i:i+1])
		if m.Done() {
			break
		}
	}
	if v := m.Verdict(); !m.Done() || !v.Passed {
		t.Fatalf("the data does not pass offline: %+v", v)
	}
	return m.Verdict().Elapsed
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
			start := time.Now()
			if baud == 0 {
				go b.play(data)
			} else {
				go b.playPaced(data, baud, start)
			}
			var stages []string
			v := c.WatchBoot(context.Background(), profile(t, "uc20"), start, func(e console.Event) {
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
			// The bytes that end the boot were written no earlier than the
			// pacing allows, and the verdict is timed by their arrival.
			if baud != 0 {
				if least := earliestVerdict(t, profile(t, "uc20"), data, baud); v.Elapsed < least || least < time.Second {
					t.Errorf("paced boot passed after %v, but its last stage cannot be reached before %v", v.Elapsed, least)
				}
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
// passes, with the gap marked. Each step waits for the capture: it read
// the first half before the unplug, and reopened the new device before
// the second half is written.
func TestUnpluggedAndBack(t *testing.T) {
	b1 := newBoard(t, "")
	pr := newProbe()
	c := openConsoleWith(t, &console.Capture{Path: b1.link, Baud: 115200, Reopen: 20 * time.Millisecond, Open: pr.open})
	data := composite(t)
	half := bytes.Index(data, []byte("Starting Reboot..."))
	var gaps []string
	done := make(chan console.Verdict, 1)
	start := time.Now()
	go func() {
		done <- c.WatchBoot(context.Background(), profile(t, "uc20"), start, func(e console.Event) {
			if e.Kind == console.EventGap {
				gaps = append(gaps, e.Detail)
			}
		})
	}()
	go b1.play(data[:half]) // blocks while nothing reads it
	pr.await(t, "the capture reads the first half", func(_, read int) bool { return read >= half })
	b1.unplug()
	b2 := newBoard(t, b1.link)
	pr.await(t, "the capture reopens the console", func(opens, _ int) bool { return opens >= 2 })
	go b2.play(data[half:])
	select {
	case v := <-done:
		if !v.Passed {
			t.Fatalf("verdict %+v", v)
		}
	case <-time.After(ceiling):
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

// TestAwaitOutputKeepsBytes: AwaitOutput waits for bytes read after its
// mark (what came before does not count), and consumes nothing: the boot
// watcher after it sees every stage from the first byte.
func TestAwaitOutputKeepsBytes(t *testing.T) {
	b := newBoard(t, "")
	c := openConsole(t, b.link, nil)
	data := composite(t)
	// Bytes before the mark are kept, but are no proof.
	b.play([]byte("stale\r\n"))
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	early, stop := context.WithCancel(ctx)
	got := make(chan error, 1)
	mark := time.Now().Add(time.Hour)
	go func() { got <- c.AwaitOutput(early, mark) }()
	// Nothing after the mark can come: the wait ends only with its context.
	stop()
	if err := <-got; err == nil {
		t.Fatal("output after a mark an hour away")
	}
	start := time.Now()
	go b.play(data)
	if err := c.AwaitOutput(ctx, start); err != nil {
		t.Fatal(err)
	}
	var stages []string
	var lines []string
	v := c.WatchBoot(ctx, profile(t, "uc20"), start, func(e console.Event) {
		switch e.Kind {
		case console.EventStage:
			stages = append(stages, e.Stage)
		case console.EventLine:
			lines = append(lines, e.Line)
		}
	})
	if !v.Passed {
		t.Fatalf("verdict %+v", v)
	}
	if strings.Join(stages, " ") != "first-bytes bootloader install-boot run-boot seeding console-ready" {
		t.Errorf("stages %v", stages)
	}
	if len(lines) == 0 || lines[0] != "stale" {
		t.Errorf("the watcher did not see the held bytes first: %q", lines[:min(3, len(lines))])
	}
}
