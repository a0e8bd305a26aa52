package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/term"

	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/tui"
)

// terminal returns the terminal stdout writes to, if it is one.
func terminal(stdout io.Writer) (*os.File, bool) {
	for {
		u, ok := stdout.(interface{ Unwrap() io.Writer })
		if !ok {
			break
		}
		stdout = u.Unwrap()
	}
	f, ok := stdout.(*os.File)
	if !ok || !term.IsTerminal(f.Fd()) {
		return nil, false
	}
	return f, true
}

// signIn is the pipeline for an interface that asks who is at the bench:
// the first operator named starts the station's work.
type signIn struct {
	*lines.Pipeline
	once sync.Once
	done chan struct{}
}

func (s *signIn) SetOperator(name string) error {
	err := s.Pipeline.SetOperator(name)
	if err == nil {
		s.once.Do(func() { close(s.done) })
	}
	return err
}

// runTUI runs the station with the bench interface on the terminal, then
// prints the batch's summary.
func runTUI(ctx context.Context, st *lines.Station, hw lines.Hardware, o headlessOptions, tty *os.File) error {
	fmt.Fprintf(tty, "flashstation: preparing %s (images, proxies, batches)...\n", st.ID)
	r, err := startStation(ctx, st, hw, o)
	if err != nil {
		return err
	}
	defer r.Close()
	r.sayMetrics(tty)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := r.p.Subscribe(8192)
	done := make(chan error, 1)
	// Without an operator the interface asks who is at the bench first;
	// no board is taken before someone has signed in.
	var station tui.Station = r.p
	signedIn := make(chan struct{})
	if o.operator == "" {
		station = &signIn{Pipeline: r.p, done: signedIn}
	} else {
		close(signedIn)
	}
	go func() {
		select {
		case <-signedIn:
			done <- r.p.Run(runCtx)
		case <-runCtx.Done():
			done <- nil
		}
	}()

	start := time.Now()
	m := tui.New(runCtx, tui.Options{Station: station, Records: r.led, Events: events, Done: r.p.Done(),
		StationID: st.ID, Operator: o.operator, ExportDir: filepath.Join(st.DataDir, "exports"), Logger: r.log, Bell: o.bell})
	prog := tea.NewProgram(m, tea.WithContext(runCtx), tea.WithOutput(tty))
	r.log.Info().Msg("bench interface started")
	_, tuiErr := prog.Run()
	r.log.Info().Err(tuiErr).Int("working", m.Working()).Msg("bench interface ended")
	if slots := r.p.Registering(); len(slots) > 0 {
		fmt.Fprintf(tty, "flashstation: %s\n", lines.StopGraceNotice(slots, r.p.StopGrace()))
	}
	// Ctrl-C, now that the interface has given the terminal back, ends the
	// stop's wait at once.
	defer context.AfterFunc(ctx, r.p.StopNow)()
	cancel()
	<-done
	if tuiErr != nil && ctx.Err() == nil {
		return fmt.Errorf("bench interface: %w", tuiErr)
	}
	return r.finish(o, time.Since(start), tty)
}
