package console_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/flashstation/flashstation/console"
)

const playerEnv = "FLASHSTATION_CONSOLE_PLAYER"

func init() {
	// The test binary doubles as the boards: a child process that plays
	// the composite on every pty master it was given (fds 3...), paced at
	// 115200 baud, so the benchmark's CPU figure is the watcher's alone.
	if n, err := strconv.Atoi(os.Getenv(playerEnv)); err == nil {
		play(n)
		os.Exit(0)
	}
}

func play(n int) {
	data, err := os.ReadFile("testdata/uc20-first-boot-composite.txt")
	if err != nil {
		panic(err)
	}
	mark := bytes.Index(data, []byte("Press enter to configure."))
	const chunk = 64
	perChunk := time.Duration(chunk * 10 * int64(time.Second) / 115200)
	var wg sync.WaitGroup
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for i := range n {
		f := os.NewFile(uintptr(3+i), "pty")
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			for off := 0; off < len(data); off += chunk {
				end := min(off+chunk, len(data))
				f.Write(data[off:end])
				if off <= mark+25 && mark+25 < end+chunk && mark+25 <= end {
					mu.Lock()
					fmt.Fprintf(out, "mark %d %d\n", i, time.Now().UnixNano())
					mu.Unlock()
				}
				if d := time.Until(start.Add(perChunk * time.Duration(off/chunk+1))); d > 0 {
					time.Sleep(d)
				}
			}
		}()
	}
	wg.Wait()
	out.Flush()
}

func cpuTime() (user, sys time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// BenchmarkConsoles64 watches 64 consoles each streaming the composite at
// 115200 baud at once (from another process) and reports the watcher's CPU
// use and the delay from a marker's last byte to its stage event.
// Run with: go test ./console -run '^$' -bench Consoles64 -benchtime 1x
func BenchmarkConsoles64(b *testing.B) {
	const n = 64
	for b.Loop() {
		var masters []*os.File
		var cons []*console.Console
		for i := range n {
			m, s, err := pty.Open()
			if err != nil {
				b.Skip(err)
			}
			defer m.Close()
			defer s.Close()
			masters = append(masters, m)
			c, err := console.OpenConsole(context.Background(), &console.Capture{Path: s.Name(), Baud: 115200})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			cons = append(cons, c)
			_ = i
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", playerEnv, n))
		cmd.ExtraFiles = masters
		var marks bytes.Buffer
		cmd.Stdout = &marks
		readyAt := make([]time.Time, n)
		var wg sync.WaitGroup
		p, _ := console.LoadProfile("uc20")
		user0, sys0 := cpuTime()
		wall0 := time.Now()
		for i, c := range cons {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := c.WatchBoot(context.Background(), p, time.Now(), func(e console.Event) {
					if e.Kind == console.EventReady {
						readyAt[i] = time.Now()
					}
				})
				if !v.Passed {
					b.Errorf("console %d: %+v", i, v)
				}
			}()
		}
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		wg.Wait()
		user1, sys1 := cpuTime()
		wall := time.Since(wall0)
		cpu := user1 - user0 + sys1 - sys0
		var lat []float64
		sc := bufio.NewScanner(&marks)
		for sc.Scan() {
			var i int
			var ns int64
			if _, err := fmt.Sscanf(sc.Text(), "mark %d %d", &i, &ns); err == nil && !readyAt[i].IsZero() {
				lat = append(lat, float64(readyAt[i].Sub(time.Unix(0, ns)).Microseconds())/1000)
			}
		}
		sort.Float64s(lat)
		if len(lat) == 0 {
			b.Fatalf("no latencies: %q", strings.TrimSpace(marks.String()))
		}
		b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%cpu-of-one-core")
		b.ReportMetric(100*(sys1-sys0).Seconds()/wall.Seconds(), "%of-which-kernel")
		b.ReportMetric(lat[len(lat)/2], "ms-p50-marker-latency")
		b.ReportMetric(lat[len(lat)-1], "ms-max-marker-latency")
	}
}
