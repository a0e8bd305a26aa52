// Package metrics serves a station's Prometheus metrics: the units it
// finished (by line, verdict and reason), what its flashes wrote and how
// fast, how long boards took to register, its vaults' health, its slots'
// states and the factory ledger outbox's backlog.
//
// The metrics are one more consumer of the pipeline's event stream
// (lines.Pipeline.Subscribe): Observe only updates counters, so the
// stream never waits on them. What the pipeline knows at any moment (slot
// states, vault health, the outbox) is read when Prometheus scrapes. Each
// station owns its registry (no global one); Start wires a pipeline to an
// HTTP endpoint at station.metrics.listen, and Close stops both.
package metrics

import (
	"context"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/flashstation/flashstation/lines"
)

// Source is what the scrape reads of a running station: its slots and
// its lines' health (*lines.Pipeline is one).
type Source interface {
	Slots() []lines.SlotView
	Health() []lines.LineHealth
}

// Backlogger tells how many rows wait to go to the factory ledger (the
// ledger's outbox).
type Backlogger interface {
	Backlog(ctx context.Context) (int, error)
}

// BacklogFunc is a function that is a Backlogger.
type BacklogFunc func(ctx context.Context) (int, error)

// Backlog calls f.
func (f BacklogFunc) Backlog(ctx context.Context) (int, error) { return f(ctx) }

// Options configure a station's metrics.
type Options struct {
	// StationID is the station_id of flashstation_station_info.
	StationID string
	// Lines are the station's line ids: their series exist (at zero)
	// from the start, so that rate() and increase() see the first unit.
	Lines []string
	// Source gives slot states and vault health at scrape time (nil:
	// neither is reported).
	Source Source
	// Backlog gives flashstation_outbox_backlog at scrape time (nil: the
	// station has no outbox; the metric is absent).
	Backlog Backlogger
	// BacklogTimeout bounds one Backlog call (default 2 s).
	BacklogTimeout time.Duration
}

// Metric names.
const (
	NameStationInfo      = "flashstation_station_info"
	NameUnits            = "flashstation_units_total"
	NameFlashWritten     = "flashstation_flash_written_bytes_total"
	NameFlashWrite       = "flashstation_flash_write_seconds_total"
	NameFlashVerify      = "flashstation_flash_verify_seconds_total"
	NameFlashThroughput  = "flashstation_flash_throughput_bytes_per_second"
	NameRegistration     = "flashstation_registration_seconds"
	NameBootToSerial     = "flashstation_boot_to_serial_seconds"
	NameVaultUp          = "flashstation_vault_up"
	NameVaultProbe       = "flashstation_vault_probe_seconds"
	NameVaultLastProbe   = "flashstation_vault_last_probe_timestamp_seconds"
	NameSlots            = "flashstation_slots"
	NameOutboxBacklog    = "flashstation_outbox_backlog"
	NameDroppedReasons   = "flashstation_units_reason_overflow_total"
	maxReasonLabelValues = 200
)

// Verdicts of flashstation_units_total.
var verdicts = []string{"pass", lines.ClassFail, lines.ClassError, lines.ClassAborted}

// SlotStates are the states flashstation_slots counts, each line's at
// zero when no slot is in it.
var SlotStates = []string{lines.StateIdle, lines.StatePresent, lines.StateFlashing, lines.StateBooting,
	lines.StateRegister, lines.StatePass, lines.StateFail, lines.StateDisabled, lines.StateStopped}

// Buckets.
var (
	// 1 MB/s to 1 GB/s, doubling: a USB 2 eMMC writes ~20 MB/s, USB 3
	// and fastboot over TCP more.
	throughputBuckets = prometheus.ExponentialBuckets(1e6, 2, 11)
	// A quarter second (a proxy answer) to ten minutes (the default wait
	// for a serial).
	registrationBuckets = []float64{0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600}
	// Ten seconds to half an hour: a first boot with its install and
	// seeding, then the registration.
	bootBuckets = []float64{10, 20, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200, 1800}
)

// reasonPattern is what a reason code looks like (the pipeline's and the
// boot profiles'); anything else is counted as "other".
var reasonPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Metrics are one station's metrics and their registry.
type Metrics struct {
	reg *prometheus.Registry
	o   Options

	units        *prometheus.CounterVec
	written      *prometheus.CounterVec
	writeSecs    *prometheus.CounterVec
	verifySecs   *prometheus.CounterVec
	throughput   *prometheus.HistogramVec
	registration *prometheus.HistogramVec
	bootToSerial *prometheus.HistogramVec
	overflow     prometheus.Counter

	// mu guards what Observe keeps between events; the scrape never takes it.
	mu sync.Mutex
	// registering: when each slot's unit was booted and when it entered
	// the register state.
	registering map[string]registerStart
	// reasons are the reason label values seen (bounded).
	reasons map[string]bool
}

type registerStart struct {
	unit     int64
	booted   time.Time // boot triggered: a proxy line's registration window opens
	register time.Time // console ready: the slot waits for the serial
}

// New makes a station's metrics on a registry of its own, with the Go
// runtime's and the process's collectors.
func New(o Options) *Metrics {
	if o.BacklogTimeout <= 0 {
		o.BacklogTimeout = 2 * time.Second
	}
	m := &Metrics{reg: prometheus.NewRegistry(), o: o, registering: map[string]registerStart{}, reasons: map[string]bool{}}
	m.units = prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameUnits,
		Help: "Units finished, by line, verdict (pass, fail: the board's fault, error: the station's, aborted) and reason code (empty for a pass)."},
		[]string{"line", "verdict", "reason"})
	m.written = prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameFlashWritten,
		Help: "Bytes written to boards by finished flashes (failed ones too), by line."}, []string{"line"})
	m.writeSecs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameFlashWrite,
		Help: "Seconds spent writing boards, by line: rate(written bytes) / rate(this) is the bench's write throughput."}, []string{"line"})
	m.verifySecs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameFlashVerify,
		Help: "Seconds spent reading boards back to verify them, by line."}, []string{"line"})
	m.throughput = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: NameFlashThroughput,
		Help: "Write throughput of each flash (bytes written / write time), by line.", Buckets: throughputBuckets}, []string{"line"})
	m.registration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: NameRegistration,
		Help:    "Seconds from a booted board's slot entering register (its console is ready: the station waits for its serial) to its serial assertion verified and recorded, by line.",
		Buckets: registrationBuckets}, []string{"line"})
	m.bootToSerial = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: NameBootToSerial,
		Help:    "Seconds from a board's boot trigger (a proxy line opens the unit's registration window then) to its serial assertion verified and recorded, by line.",
		Buckets: bootBuckets}, []string{"line"})
	m.overflow = prometheus.NewCounter(prometheus.CounterOpts{Name: NameDroppedReasons,
		Help: "Units whose reason code was counted as \"other\" in flashstation_units_total (too many distinct reasons, or not a reason code)."})
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: NameStationInfo, Help: "The station's id (always 1)."}, []string{"station_id"})
	info.WithLabelValues(o.StationID).Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		info, m.units, m.written, m.writeSecs, m.verifySecs, m.throughput, m.registration, m.bootToSerial, m.overflow,
		&scraped{m: m},
	)
	// Known series from the start: a counter that appears at 1 loses its
	// first increase to rate() and increase().
	for _, l := range o.Lines {
		m.units.WithLabelValues(l, "pass", "")
		for _, r := range lines.Reasons {
			m.units.WithLabelValues(l, r.Class, r.Code)
			m.reasons[r.Code] = true
		}
		m.written.WithLabelValues(l)
		m.writeSecs.WithLabelValues(l)
		m.verifySecs.WithLabelValues(l)
		m.throughput.WithLabelValues(l)
		m.registration.WithLabelValues(l)
		m.bootToSerial.WithLabelValues(l)
	}
	return m
}

// Registry is the station's registry (to serve, or to register more).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Observe counts one event of the pipeline. It only updates counters and
// a small map, so a consumer calling it keeps up with any stream; it is
// safe for concurrent use.
func (m *Metrics) Observe(e lines.Event) {
	switch e.Kind {
	case lines.EventVerdict:
		m.units.WithLabelValues(e.Line, verdictOf(e), m.reasonLabel(e)).Inc()
	case lines.EventFlash:
		if f := e.Flash; f != nil {
			m.written.WithLabelValues(e.Line).Add(float64(max(f.Written, 0)))
			m.writeSecs.WithLabelValues(e.Line).Add(max(f.Write.Seconds(), 0))
			m.verifySecs.WithLabelValues(e.Line).Add(max(f.Verify.Seconds(), 0))
			if f.Written > 0 && f.Write > 0 {
				m.throughput.WithLabelValues(e.Line).Observe(float64(f.Written) / f.Write.Seconds())
			}
		}
	case lines.EventState:
		m.registrationState(e)
	case lines.EventStage:
		// On a proxy line with a console login, the identity check starts
		// once the serial is recorded.
		if e.Stage == lines.StageIdentity {
			m.registered(e)
		}
	}
}

// registrationState times a unit's registration: booting and register
// start the clocks, a pass stops them (the serial was recorded just
// before), anything else drops them.
func (m *Metrics) registrationState(e lines.Event) {
	switch e.State {
	case lines.StateBooting:
		m.mu.Lock()
		m.registering[e.Slot] = registerStart{unit: e.Unit, booted: e.At}
		m.mu.Unlock()
	case lines.StateRegister:
		m.mu.Lock()
		start := m.registering[e.Slot]
		if start.unit != e.Unit {
			start = registerStart{unit: e.Unit}
		}
		start.register = e.At
		m.registering[e.Slot] = start
		m.mu.Unlock()
	case lines.StatePass:
		m.registered(e)
	default:
		m.mu.Lock()
		delete(m.registering, e.Slot)
		m.mu.Unlock()
	}
}

// registered observes a slot's registration times, once.
func (m *Metrics) registered(e lines.Event) {
	m.mu.Lock()
	start, ok := m.registering[e.Slot]
	delete(m.registering, e.Slot)
	m.mu.Unlock()
	if !ok || start.unit != e.Unit {
		return
	}
	if !start.register.IsZero() && !e.At.Before(start.register) {
		m.registration.WithLabelValues(e.Line).Observe(e.At.Sub(start.register).Seconds())
	}
	if !start.booted.IsZero() && !e.At.Before(start.booted) {
		m.bootToSerial.WithLabelValues(e.Line).Observe(e.At.Sub(start.booted).Seconds())
	}
}

// verdictOf is a verdict's outcome label.
func verdictOf(e lines.Event) string {
	if slices.Contains(verdicts, e.Outcome) {
		return e.Outcome
	}
	if e.State == lines.StatePass {
		return "pass"
	}
	return lines.ClassFail
}

// reasonLabel bounds the reason label: reason codes only, and at most
// maxReasonLabelValues of them (boot profiles may add their own).
func (m *Metrics) reasonLabel(e lines.Event) string {
	if e.Reason == "" {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reasons[e.Reason] {
		return e.Reason
	}
	if reasonPattern.MatchString(e.Reason) && len(m.reasons) < maxReasonLabelValues {
		m.reasons[e.Reason] = true
		return e.Reason
	}
	m.overflow.Inc()
	return "other"
}

// Consume observes every event of the stream until it is closed (the
// pipeline's Close) or ctx ends. A pipeline waits on a subscriber whose
// buffer is full of states and verdicts: end ctx only once the pipeline
// emits no more (Start's consumer runs to the stream's end).
func (m *Metrics) Consume(ctx context.Context, events <-chan lines.Event) {
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return
			}
			m.Observe(e)
		case <-ctx.Done():
			return
		}
	}
}

// scraped collects what is read at scrape time: slot states, vault
// health and the outbox backlog.
type scraped struct{ m *Metrics }

var (
	descSlots = prometheus.NewDesc(NameSlots, "Slots in each state, by line.", []string{"line", "state"}, nil)
	descUp    = prometheus.NewDesc(NameVaultUp,
		"Whether the line's Serial Vault answered its last health check with its database up and the line's api-key accepted (1) or not (0); absent before the first check.",
		[]string{"line"}, nil)
	descProbe     = prometheus.NewDesc(NameVaultProbe, "How long the line's vault took to answer its last health check.", []string{"line"}, nil)
	descLastProbe = prometheus.NewDesc(NameVaultLastProbe, "When the line's vault was last checked (Unix time).", []string{"line"}, nil)
	descBacklog   = prometheus.NewDesc(NameOutboxBacklog, "Rows in the outbox waiting to go to the factory ledger.", nil, nil)
)

func (s *scraped) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSlots
	ch <- descUp
	ch <- descProbe
	ch <- descLastProbe
	if s.m.o.Backlog != nil {
		ch <- descBacklog
	}
}

func (s *scraped) Collect(ch chan<- prometheus.Metric) {
	o := s.m.o
	if o.Source != nil {
		counts := map[string]map[string]int{}
		for _, l := range o.Lines {
			counts[l] = map[string]int{}
		}
		for _, v := range o.Source.Slots() {
			if counts[v.Line] == nil {
				counts[v.Line] = map[string]int{}
			}
			counts[v.Line][v.State]++
		}
		for line, byState := range counts {
			for _, state := range SlotStates {
				ch <- prometheus.MustNewConstMetric(descSlots, prometheus.GaugeValue, float64(byState[state]), line, state)
			}
		}
		for _, h := range o.Source.Health() {
			if h.VaultChecked.IsZero() {
				continue
			}
			up := 0.0
			if h.VaultOK {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, h.Line)
			ch <- prometheus.MustNewConstMetric(descProbe, prometheus.GaugeValue, h.VaultLatency.Seconds(), h.Line)
			ch <- prometheus.MustNewConstMetric(descLastProbe, prometheus.GaugeValue, float64(h.VaultChecked.UnixNano())/1e9, h.Line)
		}
	}
	if o.Backlog != nil {
		ctx, cancel := context.WithTimeout(context.Background(), o.BacklogTimeout)
		n, err := o.Backlog.Backlog(ctx)
		cancel()
		if err != nil {
			ch <- prometheus.NewInvalidMetric(descBacklog, err)
		} else {
			ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(n))
		}
	}
}
