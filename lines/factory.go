package lines

import (
	"context"
	"errors"
	"fmt"

	"github.com/flashstation/flashstation/ledger"
)

// FactoryLedger is the factory's shared ledger (station.ledger in the
// station file): a PostgreSQL URL, read from a file or the environment
// because it may carry a password.
type FactoryLedger struct {
	URL SecretRef
}

// IsSet reports whether the station forwards to a factory ledger.
func (f FactoryLedger) IsSet() bool { return f.URL.IsSet() }

// ErrFactoryURL is a station.ledger.url that is not a PostgreSQL URL.
var ErrFactoryURL = errors.New("station.ledger.url is not a postgres:// URL")

// factoryForwarder makes the station's forwarder, or turns its outbox off
// when the station has no factory ledger. The URL is resolved here and
// held by the forwarder alone.
func factoryForwarder(ctx context.Context, st *Station, led *ledger.Ledger) (*ledger.Forwarder, error) {
	if !st.Ledger.IsSet() {
		return nil, led.DisableForwarding(ctx)
	}
	v, err := st.Ledger.URL.Resolve()
	if err != nil {
		return nil, fmt.Errorf("factory ledger (%s): %w", st.Ledger.URL, err)
	}
	dsn := v.Reveal()
	if !ledger.IsFactoryURL(dsn) {
		return nil, fmt.Errorf("factory ledger (%s): %w", st.Ledger.URL, ErrFactoryURL)
	}
	return ledger.NewForwarder(led, dsn, st.ID), nil
}

// Factory is the station's factory ledger status (ok false: it has
// none).
func (p *Pipeline) Factory() (ledger.ForwardStatus, bool) {
	if p.fwd == nil {
		return ledger.ForwardStatus{}, false
	}
	return p.fwd.Status(), true
}

// Backlog is how many records wait for the factory ledger (the metrics'
// outbox backlog).
func (p *Pipeline) Backlog(ctx context.Context) (int, error) { return p.led.Backlog(ctx) }

// watchFactory tells the bench, on the event stream, when the factory
// ledger is reached, lost and reached again (with what waits), and when
// it refuses the bench.
func (p *Pipeline) watchFactory(ctx context.Context) {
	var was ledger.ForwardStatus
	said := false
	for {
		ch := p.fwd.Changed()
		s := p.fwd.Status()
		var texts []string
		switch {
		case s.Clash && !was.Clash:
			texts = append(texts, s.Header())
		case s.Online && !was.Online && !said:
			texts = append(texts, fmt.Sprintf("factory ledger connected: %d to send", s.Backlog))
		case s.Online && !was.Online:
			texts = append(texts, fmt.Sprintf("factory ledger back: %d to send", s.Backlog))
		case !s.Online && s.Err != "" && (was.Online || !said):
			texts = append(texts, s.Header()+" ("+s.Err+")")
		}
		if s.Duplicates > was.Duplicates {
			texts = append(texts, fmt.Sprintf("factory ledger: %d of this bench's serials or device keys were recorded by another bench too", s.Duplicates))
		}
		for _, text := range texts {
			said = true
			p.log.Info().Str("factory", text).Msg("factory ledger")
			p.emit(Event{Kind: EventNotice, Text: text})
		}
		was = s
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}
