package ledger

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
)

// ForwardStatus is what a bench shows of its factory ledger.
type ForwardStatus struct {
	// Online: the last attempt reached the factory ledger.
	Online bool `json:"online"`
	// Joined: the bench has met its factory ledger once (until then its
	// outbox is not on, and everything is sent when it is).
	Joined bool `json:"joined"`
	// Backlog is how many outbox entries wait.
	Backlog int `json:"backlog"`
	// Sent counts entries sent since the bench started.
	Sent int64 `json:"sent"`
	// LastContact is when the factory ledger last answered.
	LastContact time.Time `json:"last_contact,omitzero"`
	// Err is why the last attempt failed (never the URL's secrets).
	Err string `json:"error,omitempty"`
	// Clash: the factory ledger holds another bench's rows under this
	// station id.
	Clash bool `json:"station_clash,omitempty"`
	// Duplicates counts this bench's serials and device keys that other
	// benches recorded too.
	Duplicates int `json:"factory_duplicates"`
}

// Header is the status as the bench's header line says it ("" when
// all is well and sent).
func (s ForwardStatus) Header() string {
	switch {
	case s.Clash:
		return fmt.Sprintf("factory ledger refuses this bench: another bench uses its station id - %d to send", s.Backlog)
	case !s.Online && !s.Joined:
		return "factory ledger offline - not joined yet"
	case !s.Online:
		return fmt.Sprintf("factory ledger offline - %d to send", s.Backlog)
	case s.Backlog > 0:
		return fmt.Sprintf("factory ledger: %d to send", s.Backlog)
	}
	return ""
}

// Forwarder keeps a bench's outbox flowing to its factory ledger: it
// connects (again, after an outage, backing off up to MaxBackoff), sends
// in order until the outbox is empty, then looks again every Poll or when
// kicked, and learns from the factory ledger which of the bench's serials
// other benches recorded too. The bench never waits for it.
type Forwarder struct {
	bench   *Ledger
	dsn     string // secret: never logged or shown
	station string

	// Poll is how often an idle forwarder looks at the outbox (and
	// beats its heart); MaxBackoff caps the wait after a failure; Chunk
	// is how many entries one transaction sends.
	Poll, MaxBackoff time.Duration
	Chunk            int
	// FinalGrace bounds the last sending once Run is stopped: what the
	// bench recorded last (its stop) goes too, while the factory ledger
	// answers.
	FinalGrace time.Duration

	kick chan struct{}

	mu      sync.Mutex
	st      ForwardStatus
	changed chan struct{}
	dupMark int64 // the factory's serial assertion ids checked up to
}

// NewForwarder makes a forwarder of bench to the factory ledger at dsn
// (a PostgreSQL URL, which may hold a password) for station.
func NewForwarder(bench *Ledger, dsn, station string) *Forwarder {
	return &Forwarder{bench: bench, dsn: dsn, station: station, Poll: time.Second, MaxBackoff: 15 * time.Second,
		Chunk: 5000, FinalGrace: 5 * time.Second, kick: make(chan struct{}, 1), changed: make(chan struct{})}
}

// Status is the forwarder's state now.
func (f *Forwarder) Status() ForwardStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

// Changed is closed at the next change of the status.
func (f *Forwarder) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Kick makes an idle or waiting forwarder try now.
func (f *Forwarder) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *Forwarder) update(fn func(s *ForwardStatus)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before := f.st
	fn(&f.st)
	if f.st != before {
		close(f.changed)
		f.changed = make(chan struct{})
	}
}

// Run forwards until ctx ends, then sends what is left for up to
// FinalGrace (one attempt when the factory ledger is away).
func (f *Forwarder) Run(ctx context.Context) error {
	var fac *Ledger
	defer func() {
		if fac != nil {
			fac.Close()
		}
	}()
	if flags, err := f.bench.FactoryFlags(ctx); err == nil {
		f.update(func(s *ForwardStatus) { s.Duplicates = len(flags) })
	}
	defer f.final(&fac)
	backoff := time.Duration(0)
	for {
		err := f.round(ctx, &fac)
		if ctx.Err() != nil {
			return nil
		}
		wait := f.Poll
		if err != nil {
			backoff = min(max(2*backoff, f.Poll), f.MaxBackoff)
			wait = backoff
			msg := redactError(err.Error(), f.dsn)
			f.update(func(s *ForwardStatus) {
				s.Online, s.Err, s.Clash = errors.Is(err, ErrStationClash), msg, errors.Is(err, ErrStationClash)
			})
		} else {
			backoff = 0
		}
		if n, berr := f.bench.Backlog(ctx); berr == nil {
			f.update(func(s *ForwardStatus) { s.Backlog = n })
			if err == nil && n > 0 {
				continue // a full chunk was sent: more waits
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-f.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// final sends what is left once Run was stopped, until the outbox is
// empty, the factory ledger fails once, or FinalGrace is over.
func (f *Forwarder) final(fac **Ledger) {
	ctx, cancel := context.WithTimeout(context.Background(), f.FinalGrace)
	defer cancel()
	for {
		err := f.round(ctx, fac)
		n, berr := f.bench.Backlog(ctx)
		if berr == nil {
			f.update(func(s *ForwardStatus) { s.Backlog = n })
		}
		if err != nil {
			f.update(func(s *ForwardStatus) { s.Online, s.Err = false, redactError(err.Error(), f.dsn) })
			return
		}
		if berr != nil || n == 0 {
			return
		}
	}
}

// round connects when needed and sends one chunk.
func (f *Forwarder) round(ctx context.Context, fac **Ledger) error {
	if *fac == nil {
		l, err := OpenFactory(ctx, f.dsn)
		if err != nil {
			return err
		}
		id, err := l.FactoryID(ctx)
		if err == nil {
			_, err = f.bench.EnableForwarding(ctx, id)
		}
		if err != nil {
			l.Close()
			return err
		}
		*fac = l
		f.update(func(s *ForwardStatus) { s.Joined = true })
	}
	n, err := f.bench.ForwardAll(ctx, *fac, f.station, f.Chunk)
	if err != nil {
		return err
	}
	now := time.Now()
	f.update(func(s *ForwardStatus) {
		s.Online, s.Err, s.Clash, s.LastContact = true, "", false, now
		s.Sent += int64(n)
	})
	if err := f.checkDuplicates(ctx, *fac); err != nil {
		return err
	}
	return nil
}

// redactError removes the URL (and so its password) from an error's
// text, as given and as percent-encoded. The password alone is not
// searched for: replacing a short one everywhere would tell it.
func redactError(msg, dsn string) string {
	if dsn == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, dsn, RedactURL(dsn))
	return strings.ReplaceAll(msg, url.QueryEscape(dsn), RedactURL(dsn))
}
