package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/lines"
)

// Bounds of the metrics endpoint: Prometheus sends small GETs and reads a
// few hundred kilobytes at most.
const (
	readHeaderTimeout   = 5 * time.Second
	readTimeout         = 10 * time.Second
	writeTimeout        = 30 * time.Second
	idleTimeout         = 2 * time.Minute
	maxHeaderBytes      = 16 << 10
	maxRequestsInFlight = 4
	gatherTimeout       = 10 * time.Second
	shutdownWait        = 5 * time.Second
)

// Handler serves GET /metrics (the Prometheus text format) and, at /, a
// page that links to it; anything else is 404 (405 for another method).
func (m *Metrics) Handler(log zerolog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            errorLog{log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxRequestsInFlight,
		Timeout:             gatherTimeout,
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>flashstation</title><p>flashstation station metrics: <a href="/metrics">/metrics</a></p>`+"\n")
	})
	return mux
}

// errorLog is promhttp's logger: collection errors (an outbox that does
// not answer) are logged, and the rest of the metrics served.
type errorLog struct{ log zerolog.Logger }

func (l errorLog) Println(v ...any) { l.log.Warn().Msg("metrics: " + fmt.Sprint(v...)) }

// Server is a running metrics endpoint.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	err  error
}

// Listen listens on addr (host:port; port 0 picks one) and serves h there
// until Close.
func Listen(addr string, h http.Handler, log zerolog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s := &Server{ln: ln, done: make(chan struct{}), srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
			log.Error().Err(err).Str("listen", ln.Addr().String()).Msg("metrics endpoint stopped")
		}
	}()
	return s, nil
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the endpoint: scrapes in progress get a few seconds to
// end, then their connections are closed. It waits for the server to
// stop and returns why it stopped, if not because of Close.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
	return s.err
}

// Station is a station's metrics at work: the consumer of its pipeline's
// events and its endpoint.
type Station struct {
	Metrics *Metrics
	server  *Server
	// drained is closed once the consumer has counted the stream's end.
	drained chan struct{}
}

// Start serves the metrics of a station's pipeline at
// st.Metrics.Listen: it subscribes to the pipeline's events now (call it
// before Run) and consumes them until the pipeline closes its stream.
// backlog may be nil (no outbox). Close it after the pipeline's Close.
func Start(st *lines.Station, p *lines.Pipeline, backlog Backlogger, log zerolog.Logger) (*Station, error) {
	var ids []string
	for _, l := range st.Lines {
		ids = append(ids, l.ID)
	}
	m := New(Options{StationID: st.ID, Lines: ids, Source: p, Backlog: backlog})
	srv, err := Listen(st.Metrics.Listen, m.Handler(log), log)
	if err != nil {
		return nil, err
	}
	s := &Station{Metrics: m, server: srv, drained: make(chan struct{})}
	log.Info().Str("listen", srv.Addr().String()).Msg("serving metrics at /metrics")
	s.consume(p.Subscribe(eventBuffer))
	return s, nil
}

// eventBuffer is the metrics' subscription buffer: a burst of states and
// verdicts from every slot at once fits while the consumer catches up.
const eventBuffer = 4096

// consume observes events until the stream closes. It never stops
// earlier: the pipeline waits on a subscriber whose buffer is full of
// states and verdicts.
func (s *Station) consume(events <-chan lines.Event) {
	go func() {
		defer close(s.drained)
		s.Metrics.Consume(context.Background(), events)
	}()
}

// Drained is closed once every event of the pipeline is counted: its
// stream has ended (the pipeline's Close). The endpoint serves on until
// Close.
func (s *Station) Drained() <-chan struct{} { return s.drained }

// Addr is where the metrics are served.
func (s *Station) Addr() net.Addr { return s.server.Addr() }

// Close stops the endpoint and waits for the consumer to see the end of
// the pipeline's stream: call it after the pipeline's Close, which ends
// the stream.
func (s *Station) Close() error {
	err := s.server.Close()
	<-s.drained
	return err
}
