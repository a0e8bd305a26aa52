package console

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"
)

// Console is a board's serial console while a slot works: the capture
// runs from Open to Close, feeding first the boot watcher, then any
// conversation with the board (the console login capture).
type Console struct {
	capture *Capture
	chunks  chan Chunk
	cancel  context.CancelFunc
	done    chan error

	closeOnce sync.Once
	closeErr  error

	split   Splitter // for Expect, after the boot
	pending []string // lines split but not yet consumed by Expect
	gone    bool
	// held are chunks AwaitOutput read and kept for the next reader
	// (WatchBoot, Expect, Follow), which takes them first.
	held []Chunk
}

// OpenConsole opens a console and starts capturing it. A port that cannot
// be opened is a *PortError with a reason code.
func OpenConsole(ctx context.Context, c *Capture) (*Console, error) {
	if err := c.Start(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	con := &Console{capture: c, chunks: make(chan Chunk, 256), cancel: cancel, done: make(chan error, 1)}
	go func() { con.done <- c.Run(ctx, con.chunks) }()
	return con, nil
}

// Close stops the capture and closes the port; it may be called again.
func (c *Console) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		for range c.chunks {
		}
		c.closeErr = <-c.done
		if errors.Is(c.closeErr, context.Canceled) {
			c.closeErr = nil
		}
	})
	return c.closeErr
}

// WatchBoot follows the boot until the profile's last stage or a failure.
func (c *Console) WatchBoot(ctx context.Context, p *Profile, start time.Time, onEvent func(Event)) Verdict {
	return watch(ctx, NewMachine(p, start), c.takeHeld(), c.chunks, onEvent)
}

// WatchMachine is WatchBoot with a machine made by the caller, for the
// checks set on it before the boot (Machine.ExpectSeedLabel):
//
//	m := console.NewMachine(p, start)
//	m.ExpectSeedLabel(label)
//	v := con.WatchMachine(ctx, m, onEvent)
func (c *Console) WatchMachine(ctx context.Context, m *Machine, onEvent func(Event)) Verdict {
	return watch(ctx, m, c.takeHeld(), c.chunks, onEvent)
}

// AwaitOutput waits until the console receives bytes read at or after
// since (a power-on: proof that the board speaks). It consumes nothing:
// every chunk it reads is kept for the next WatchBoot, Expect or Follow,
// which sees it first, with its own time. It returns ctx's error when ctx
// ends first, and ErrUnplugged when the capture ended for good.
func (c *Console) AwaitOutput(ctx context.Context, since time.Time) error {
	for _, ch := range c.held {
		if ch.Gap == "" && len(ch.Data) > 0 && !ch.At.Before(since) {
			return nil
		}
	}
	for {
		if c.gone {
			return ErrUnplugged
		}
		select {
		case ch, ok := <-c.chunks:
			if !ok {
				c.gone = true
				continue
			}
			c.held = append(c.held, ch)
			if ch.Gap == "" && len(ch.Data) > 0 && !ch.At.Before(since) {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// takeHeld returns the chunks AwaitOutput kept, and forgets them.
func (c *Console) takeHeld() []Chunk {
	h := c.held
	c.held = nil
	return h
}

// Send writes text to the board.
func (c *Console) Send(text string) error { return c.capture.Write([]byte(text)) }

// SendSecret writes a secret; the transcript shows [redacted].
func (c *Console) SendSecret(secret, suffix string) error {
	if c.capture.Transcript != nil {
		c.capture.Transcript.Mask([]byte(secret))
	}
	return c.capture.WriteSecret([]byte(secret+suffix), []byte("[redacted]"+suffix))
}

// ErrTimeout is an Expect that ran out of time.
var ErrTimeout = errors.New("timed out")

// Expect waits until a complete line matches re (or, with prompt, the
// line still being received, such as "login: "), and returns it with the
// lines seen before it. Lines go to onLine as they come.
func (c *Console) Expect(ctx context.Context, re *regexp.Regexp, prompt bool, timeout time.Duration, onLine func(string)) (string, []string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	var seen []string
	for _, ch := range c.takeHeld() {
		if ch.Gap == "" {
			c.split.Write(ch.Data)
		}
	}
	for {
		c.pending = append(c.pending, c.split.Lines()...)
		for len(c.pending) > 0 {
			l := c.pending[0]
			c.pending = c.pending[1:]
			if onLine != nil {
				onLine(l)
			}
			if re.MatchString(l) {
				return l, seen, nil // what came after stays for the next Expect
			}
			seen = append(seen, l)
		}
		if prompt {
			if p := c.split.Partial(); re.MatchString(p) {
				return p, seen, nil
			}
		}
		if c.gone {
			return "", seen, ErrUnplugged
		}
		select {
		case ch, ok := <-c.chunks:
			if !ok {
				c.gone = true
				continue
			}
			if ch.Gap == "" {
				c.split.Write(ch.Data)
			}
		case <-t.C:
			return "", seen, fmt.Errorf("waiting for %q: %w", re, ErrTimeout)
		case <-ctx.Done():
			return "", seen, ctx.Err()
		}
	}
}

// Follow reads the console in the background, handing complete lines to
// onLine, until stop is called; stop returns once reading stopped, so a
// WatchBoot or Expect after it sees everything that came after. It lets a
// slot show what the board prints while it is being flashed.
func (c *Console) Follow(onLine func(string)) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	held := c.takeHeld()
	go func() {
		defer close(done)
		var s Splitter
		for _, ch := range held {
			if ch.Gap == "" {
				s.Write(ch.Data)
			}
		}
		for _, l := range s.Lines() {
			if onLine != nil {
				onLine(l)
			}
		}
		for {
			select {
			case <-quit:
				return
			case ch, ok := <-c.chunks:
				if !ok {
					c.gone = true
					return
				}
				if ch.Gap != "" {
					continue
				}
				s.Write(ch.Data)
				for _, l := range s.Lines() {
					if onLine != nil {
						onLine(l)
					}
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-done
		})
	}
}
