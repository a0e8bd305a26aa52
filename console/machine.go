package console

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	EventLine  EventKind = iota // a console line
	EventStage                  // a stage was reached (or skipped)
	EventGap                    // the console went away or came back
	EventFail                   // the boot failed: Reason and Detail
	EventReady                  // the last stage was reached: the boot passed
)

// Event is what the stage machine reports, in order.
type Event struct {
	Kind    EventKind
	At      time.Duration // since the watch started
	Stage   string
	Skipped bool
	Line    string
	Reason  string
	Detail  string
}

// StageTime is when a stage was reached.
type StageTime struct {
	Name    string        `json:"name"`
	At      time.Duration `json:"-"`
	Skipped bool          `json:"skipped,omitempty"`
}

// Verdict is the outcome of a watched boot.
type Verdict struct {
	Passed    bool
	Reason    string // reason code when failed
	Detail    string // what happened, for QA
	Stages    []StageTime
	LastLines []string
	Elapsed   time.Duration
}

const (
	lastLines    = 20
	panicGrace   = 10 * time.Second
	panicLimit   = 200
	firstBytesID = "first-bytes"
)

var (
	panicStart = regexp.MustCompile(`Kernel panic - not syncing`)
	panicEnd   = regexp.MustCompile(`end Kernel panic`)
)

// Machine follows a boot on the console, stage by stage, from the bytes
// it is fed and the time. It does no I/O: Watch drives it.
type Machine struct {
	p     *Profile
	start time.Time
	split Splitter

	gotBytes   bool
	next       int // the stage waited for
	waitSince  time.Time
	banners    int
	installIdx int // index of the install stage, -1 without one

	panicking  bool
	panicSince time.Time
	panicLines []string

	last    []string
	stages  []StageTime
	done    bool
	verdict Verdict
	events  []Event
}

// NewMachine starts watching a boot at start (the port just opened).
func NewMachine(p *Profile, start time.Time) *Machine {
	m := &Machine{p: p, start: start, waitSince: start, installIdx: -1}
	for i, st := range p.Stages {
		for _, re := range st.Markers {
			for _, im := range p.InstallMarkers {
				if re.String() == im.String() {
					m.installIdx = i
				}
			}
		}
	}
	return m
}

// Done reports whether the boot passed or failed.
func (m *Machine) Done() bool { return m.done }

// Verdict is the outcome once Done.
func (m *Machine) Verdict() Verdict { return m.verdict }

// Current is the stage waited for ("" once done).
func (m *Machine) Current() string {
	if m.done || m.next >= len(m.p.Stages) {
		return ""
	}
	if !m.gotBytes {
		return firstBytesID
	}
	return m.p.Stages[m.next].Name
}

func (m *Machine) emit(e Event) { m.events = append(m.events, e) }

func (m *Machine) take() []Event {
	out := m.events
	m.events = nil
	return out
}

// Feed gives the machine bytes received at now and returns what happened.
func (m *Machine) Feed(now time.Time, b []byte) []Event {
	if m.done || len(b) == 0 {
		return m.take()
	}
	if !m.gotBytes {
		m.gotBytes = true
		m.waitSince = now
		at := now.Sub(m.start)
		m.stages = append(m.stages, StageTime{Name: firstBytesID, At: at})
		m.emit(Event{Kind: EventStage, At: at, Stage: firstBytesID})
	}
	m.split.Write(b)
	for _, line := range m.split.Lines() {
		m.line(now, line)
		if m.done {
			return m.take()
		}
	}
	if partial := m.split.Partial(); partial != "" && !m.panicking {
		m.match(now, partial, true)
	}
	if !m.done && m.split.Garbage() && len(m.stages) <= 1 {
		m.fail(now, ReasonBaudMismatch, "the console shows mostly unreadable bytes: baud mismatch or line noise")
	}
	return m.take()
}

// Gap records that the console went away (or came back, with back true).
func (m *Machine) Gap(now time.Time, what string) []Event {
	if !m.done {
		m.remember("[" + what + "]")
		m.emit(Event{Kind: EventGap, At: now.Sub(m.start), Detail: what})
	}
	return m.take()
}

func (m *Machine) remember(line string) {
	m.last = append(m.last, line)
	if len(m.last) > lastLines {
		m.last = m.last[len(m.last)-lastLines:]
	}
}

func (m *Machine) line(now time.Time, line string) {
	m.remember(line)
	m.emit(Event{Kind: EventLine, At: now.Sub(m.start), Line: line})
	if m.panicking {
		m.panicLines = append(m.panicLines, line)
		if panicEnd.MatchString(line) || len(m.panicLines) >= panicLimit {
			m.failPanic(now)
		}
		return
	}
	if panicStart.MatchString(line) {
		m.panicking, m.panicSince, m.panicLines = true, now, []string{line}
		return
	}
	for _, fp := range m.p.FailOn {
		if fp.Re.MatchString(line) {
			m.fail(now, fp.Reason, line)
			return
		}
	}
	for _, re := range m.p.BannerMarkers {
		if re.MatchString(line) {
			m.banners++
			if m.p.MaxBanners > 0 && m.banners > m.p.MaxBanners {
				m.fail(now, ReasonBootLoop, fmt.Sprintf("the bootloader started %d times (at most %d expected): the board keeps rebooting", m.banners, m.p.MaxBanners))
				return
			}
		}
	}
	if m.installIdx >= 0 && m.next > m.installIdx+1 {
		for _, re := range m.p.InstallMarkers {
			if re.MatchString(line) {
				m.fail(now, ReasonBootLoop, "the install boot started again after the run boot: boot loop ("+line+")")
				return
			}
		}
	}
	if m.next < len(m.p.Stages) {
		for _, fp := range m.p.Stages[m.next].FailOn {
			if fp.Re.MatchString(line) {
				m.fail(now, fp.Reason, line)
				return
			}
		}
	}
	m.match(now, line, false)
}

// match looks for a marker of the stage waited for or a later one; a
// later stage's marker reaches it and skips the ones before, but never
// past the install stage, which must be seen.
func (m *Machine) match(now time.Time, text string, partial bool) {
	for j := m.next; j < len(m.p.Stages); j++ {
		st := m.p.Stages[j]
		markers := st.Markers
		if partial {
			markers = st.Prompt
		}
		for _, re := range markers {
			if re.MatchString(text) {
				m.reach(now, j)
				return
			}
		}
		if !partial {
			for _, re := range st.Prompt { // a prompt that ended with a newline
				if re.MatchString(text) {
					m.reach(now, j)
					return
				}
			}
		}
		if j == m.installIdx {
			return
		}
	}
}

func (m *Machine) reach(now time.Time, j int) {
	at := now.Sub(m.start)
	for k := m.next; k < j; k++ {
		m.stages = append(m.stages, StageTime{Name: m.p.Stages[k].Name, At: at, Skipped: true})
		m.emit(Event{Kind: EventStage, At: at, Stage: m.p.Stages[k].Name, Skipped: true})
	}
	m.stages = append(m.stages, StageTime{Name: m.p.Stages[j].Name, At: at})
	m.emit(Event{Kind: EventStage, At: at, Stage: m.p.Stages[j].Name})
	m.next, m.waitSince = j+1, now
	if m.next == len(m.p.Stages) {
		m.done = true
		m.verdict = Verdict{Passed: true, Stages: m.stages, LastLines: m.last, Elapsed: at}
		m.emit(Event{Kind: EventReady, At: at, Stage: m.p.Stages[j].Name})
	}
}

func (m *Machine) fail(now time.Time, reason, detail string) {
	if m.done {
		return
	}
	m.done = true
	at := now.Sub(m.start)
	m.verdict = Verdict{Reason: reason, Detail: detail, Stages: m.stages, LastLines: append([]string(nil), m.last...), Elapsed: at}
	m.emit(Event{Kind: EventFail, At: at, Stage: m.Current(), Reason: reason, Detail: detail})
}

func (m *Machine) failPanic(now time.Time) {
	m.panicking = false
	m.fail(now, ReasonKernelPanic, strings.Join(m.panicLines, "\n"))
}

// Deadline is when Tick must next be called.
func (m *Machine) Deadline() time.Time {
	if m.done {
		return time.Time{}
	}
	d := m.start.Add(m.p.WholeBoot)
	if m.panicking {
		d = earlier(d, m.panicSince.Add(panicGrace))
	}
	if !m.gotBytes {
		return earlier(d, m.start.Add(m.p.FirstBytes))
	}
	if m.next < len(m.p.Stages) {
		d = earlier(d, m.waitSince.Add(m.p.Stages[m.next].Timeout))
	}
	return d
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Tick checks the timeouts at now.
func (m *Machine) Tick(now time.Time) []Event {
	for !m.done {
		switch {
		case m.panicking && !now.Before(m.panicSince.Add(panicGrace)):
			m.failPanic(now)
		case !now.Before(m.start.Add(m.p.WholeBoot)):
			m.fail(now, ReasonBootTimeout, fmt.Sprintf("the boot did not finish within %s (waiting for %s)", m.p.WholeBoot, m.Current()))
		case !m.gotBytes:
			if now.Before(m.start.Add(m.p.FirstBytes)) {
				return m.take()
			}
			m.fail(now, ReasonNoOutput, fmt.Sprintf("no console output within %s: check the console cable, the baud rate and the board's power", m.p.FirstBytes))
		case m.next < len(m.p.Stages):
			st := m.p.Stages[m.next]
			if now.Before(m.waitSince.Add(st.Timeout)) {
				return m.take()
			}
			if st.Optional {
				// Skipped when its time was up; the next stage's wait
				// starts then.
				end := m.waitSince.Add(st.Timeout)
				at := end.Sub(m.start)
				m.stages = append(m.stages, StageTime{Name: st.Name, At: at, Skipped: true})
				m.emit(Event{Kind: EventStage, At: at, Stage: st.Name, Skipped: true})
				m.next, m.waitSince = m.next+1, end
				continue
			}
			detail := fmt.Sprintf("%s not reached within %s", st.Name, st.Timeout)
			if m.split.Garbage() {
				detail += "; the console shows mostly unreadable bytes: baud mismatch or line noise"
			}
			if m.next == m.installIdx && m.installIdx >= 0 {
				detail += " (no install boot seen: was the image written, or did the board boot an older system?)"
			}
			m.fail(now, ReasonStageTimeout, detail)
		default:
			return m.take()
		}
	}
	return m.take()
}

// Chunk is console input for Watch: bytes received at a time, or a gap.
type Chunk struct {
	At   time.Time
	Data []byte
	Gap  string // "console disconnected", "console reconnected"
}

// Watch drives a machine with chunks until the boot passes, fails, the
// chunks end (the console is gone for good) or ctx ends. Every event goes
// to onEvent (which may be nil).
func Watch(ctx context.Context, m *Machine, chunks <-chan Chunk, onEvent func(Event)) Verdict {
	deliver := func(evs []Event) {
		if onEvent != nil {
			for _, e := range evs {
				onEvent(e)
			}
		}
	}
	timer := time.NewTimer(time.Until(m.Deadline()))
	defer timer.Stop()
	for !m.Done() {
		select {
		case c, ok := <-chunks:
			now := time.Now()
			switch {
			case !ok:
				deliver(m.Gap(now, "console gone"))
				m.fail(now, ReasonUnplugged, "the console adapter went away and did not come back")
				deliver(m.take())
				continue
			case c.Gap != "":
				deliver(m.Gap(c.At, c.Gap))
			default:
				deliver(m.Feed(c.At, c.Data))
			}
			deliver(m.Tick(now))
		case now := <-timer.C:
			deliver(m.Tick(now))
		case <-ctx.Done():
			m.fail(time.Now(), "cancelled", "the watch was stopped")
			deliver(m.take())
			continue
		}
		if !m.Done() {
			timer.Reset(time.Until(m.Deadline()))
		}
	}
	return m.Verdict()
}
