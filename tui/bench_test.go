package tui

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/tui/tuitest"
)

// bench64 is 64 slots flashing, with the station's event stream.
func bench64(b *testing.B, w, h int) (*Model, *tuitest.Station, chan lines.Event) {
	slots := slotsFlashing(64)
	st := tuitest.New(slots, health(1, 2))
	ch := make(chan lines.Event, 8192)
	m := New(context.Background(), Options{Station: st, Events: ch, StationID: "bench-01", Operator: "ana",
		Logger: zerolog.Nop(), Width: w, Height: h})
	return m, st, ch
}

// tickEvents is one tenth of a second of a 64-slot bench: every slot
// reports progress and a console line.
func tickEvents(slots []lines.SlotView, n int) []lines.Event {
	evs := make([]lines.Event, 0, 2*len(slots))
	now := time.Now()
	for _, v := range slots {
		p := v.Progress
		p.Done = (p.Done + int64(n)*(1<<20)) % p.Total
		evs = append(evs, lines.Event{At: now, Kind: lines.EventProgress, Slot: v.ID, Unit: v.Unit, Progress: p},
			lines.Event{At: now, Kind: lines.EventLine, Slot: v.ID, Unit: v.Unit, Text: fmt.Sprintf("[ %d.000] mmcblk0: p%d", n, n)})
	}
	return evs
}

// BenchmarkFrame64 is one redraw of a 64-slot bench after a tenth of a
// second of events (128), at 200x60: Update and View.
func BenchmarkFrame64(b *testing.B) {
	for _, sz := range [][2]int{{200, 60}, {250, 70}} {
		b.Run(fmt.Sprintf("%dx%d", sz[0], sz[1]), func(b *testing.B) {
			m, st, _ := bench64(b, sz[0], sz[1])
			slots := st.Slots()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n++
				m.Update(eventsMsg{events: tickEvents(slots, n)})
				_ = m.View()
			}
			// At 10 Hz per slot the reader delivers at most 1/eventWindow
			// messages a second (20): the worst case per second.
			perSec := float64(time.Second / eventWindow)
			b.ReportMetric(100*perSec*float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9, "%core@20fps")
		})
	}
}

// BenchmarkProgram64At10Hz runs the real program (Bubble Tea's renderer
// writing to a discarded terminal of 200x60) while 64 slots report
// progress and console lines at 10 Hz each, and reports the process's CPU
// time per wall second: the interface's cost on the station.
func BenchmarkProgram64At10Hz(b *testing.B) {
	const run = 2 * time.Second
	for b.Loop() {
		m, st, ch := bench64(b, 200, 60)
		slots := st.Slots()
		ctx, cancel := context.WithCancel(context.Background())
		p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(nil), tea.WithOutput(io.Discard),
			tea.WithWindowSize(200, 60), tea.WithoutSignalHandler())
		done := make(chan struct{})
		go func() { p.Run(); close(done) }()
		time.Sleep(200 * time.Millisecond)
		before := cpuTime()
		start := time.Now()
		// Each slot reports every 100 ms, the slots spread over the tenth.
		tick := time.NewTicker(100 * time.Millisecond / time.Duration(len(slots)/4))
		n := 0
		for time.Since(start) < run {
			<-tick.C
			for _, e := range tickEvents(slots[(n%16)*4:(n%16)*4+4], n) {
				ch <- e
			}
			n++
		}
		tick.Stop()
		used := cpuTime() - before
		wall := time.Since(start)
		cancel()
		<-done
		b.ReportMetric(100*used.Seconds()/wall.Seconds(), "%core")
		b.ReportMetric(float64(n*4*2)/wall.Seconds(), "events/s")
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
