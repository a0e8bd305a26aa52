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
	// EventSeedLabel: the kernel command line named a recovery system;
	// Detail is its label (see Machine.SeedLabel).
	EventSeedLabel
	// EventNote is something QA should know that fails nothing (Detail),
	// such as a seed label that could not be checked.
	EventNote
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
	// SeedLabel is the recovery system label the kernel command line
	// named ("" when the console showed none).
	SeedLabel string
	// Notes are what QA should know of the boot that failed nothing
	// (each one also came as an EventNote).
	Notes []string
}

const (
	lastLines    = 20
	panicGrace   = 10 * time.Second
	panicLimit   = 200
	firstBytesID = "first-bytes"
	maxNotes     = 8
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

	expectLabel  string // the image's seed label; "" checks nothing
	seedLabel    string // the first label the kernel command line named
	labelChecked bool   // a command line named the expected label
	labelNoted   bool   // a note said why the label was not checked
	notes        []string
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

// ExpectSeedLabel sets the recovery system label of the image written to
// the board (its seed's systems/<label>), before the first Feed. Every
// kernel command line the console shows that names a recovery system
// (snapd_recovery_system=<label>, the install boot of a UC20+ line) must
// name this one, or the boot fails with ReasonSeedLabel: the board booted
// another image. "" (the default, and UC16/UC18 lines, which have no
// label) checks nothing. A label the console does not show (a quiet
// kernel, a command line cut short, line noise) fails nothing: the verdict
// carries a note that it was not checked.
func (m *Machine) ExpectSeedLabel(label string) { m.expectLabel = label }

// SeedLabel is the recovery system label the kernel command line named
// (the first one seen; "" until then). Verdict.SeedLabel holds it too.
func (m *Machine) SeedLabel() string { return m.seedLabel }

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
	// A deadline that passed before these bytes arrived has taken effect:
	// a marker that comes late does not rescue a stage that timed out.
	m.expire(now)
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
	if c, ok := parseCmdline(line); ok {
		if m.checkCmdline(now, c); m.done {
			return
		}
	}
	m.match(now, line, false)
}

// checkCmdline checks the recovery system a kernel command line names
// against the image's seed label. It runs before the line's markers: a
// mismatched install boot is not the install boot waited for.
func (m *Machine) checkCmdline(now time.Time, c cmdline) {
	switch {
	case c.label != "":
		if m.seedLabel == "" {
			m.seedLabel = c.label
			m.emit(Event{Kind: EventSeedLabel, At: now.Sub(m.start), Stage: m.Current(), Detail: c.label})
		}
		switch {
		case m.expectLabel == "":
		case c.label == m.expectLabel:
			m.labelChecked = true
		case c.trusted:
			// Failed in the install stage when it is still ahead (the
			// command line comes before its markers are matched).
			stage := m.Current()
			if m.installIdx >= m.next {
				stage = m.p.Stages[m.installIdx].Name
			}
			m.failIn(now, stage, ReasonSeedLabel, fmt.Sprintf("the board booted recovery system %s; the image's seed is %s: the board booted another image (stale disk, wrong boot device)", c.label, m.expectLabel))
		default:
			m.note(now, fmt.Sprintf("the kernel command line names recovery system %s, not the image's %s, but shows unreadable bytes: not taken as a mismatch", c.label, m.expectLabel))
		}
	case c.named:
		if m.expectLabel != "" {
			m.note(now, "the kernel command line names an unreadable recovery system: the seed label was not checked")
		}
	case c.mode == "install" && m.expectLabel != "":
		m.note(now, "the install boot's kernel command line names no recovery system (snapd_recovery_system), or the kernel cut it short: the seed label was not checked")
	}
}

// note records something QA should know (at most maxNotes of them).
func (m *Machine) note(now time.Time, text string) {
	if len(m.notes) >= maxNotes {
		return
	}
	m.labelNoted = true
	m.notes = append(m.notes, text)
	m.emit(Event{Kind: EventNote, At: now.Sub(m.start), Stage: m.Current(), Detail: text})
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
		if m.expectLabel != "" && !m.labelChecked && !m.labelNoted {
			m.note(now, "the console showed no kernel command line naming a recovery system (a quiet kernel?): the seed label was not checked")
		}
		m.done = true
		m.verdict = Verdict{Passed: true, Stages: m.stages, LastLines: m.last, Elapsed: at, SeedLabel: m.seedLabel, Notes: m.notes}
		m.emit(Event{Kind: EventReady, At: at, Stage: m.p.Stages[j].Name})
	}
}

func (m *Machine) fail(now time.Time, reason, detail string) {
	m.failIn(now, m.Current(), reason, detail)
}

// failIn is fail with the stage the failure event names.
func (m *Machine) failIn(now time.Time, stage, reason, detail string) {
	if m.done {
		return
	}
	m.done = true
	at := now.Sub(m.start)
	m.verdict = Verdict{Reason: reason, Detail: detail, Stages: m.stages, LastLines: append([]string(nil), m.last...), Elapsed: at,
		SeedLabel: m.seedLabel, Notes: m.notes}
	m.emit(Event{Kind: EventFail, At: at, Stage: stage, Reason: reason, Detail: detail})
}

func (m *Machine) failPanic(now time.Time) {
	m.panicking = false
	m.fail(now, ReasonKernelPanic, strings.Join(m.panicLines, "\n"))
}

// timeout names a deadline of the watch.
type timeout int

const (
	timeoutWholeBoot  timeout = iota // the cap on the whole boot
	timeoutFirstBytes                // no byte since the port opened
	timeoutStage                     // the stage waited for
	timeoutPanic                     // the grace for a panic's last lines
)

// nextTimeout is the deadline that falls first, and which one it is.
// The deadlines are absolute, so the verdict does not depend on when the
// check runs: a stage whose time ran out before the boot's cap fails as
// a stage timeout even when the check comes after both (a loaded
// machine). On a tie the more specific deadline wins: the panic grace,
// then the first bytes or the stage, then the whole boot.
func (m *Machine) nextTimeout() (time.Time, timeout) {
	at, which := m.start.Add(m.p.WholeBoot), timeoutWholeBoot
	sooner := func(t time.Time, w timeout) {
		if !t.After(at) {
			at, which = t, w
		}
	}
	switch {
	case !m.gotBytes:
		sooner(m.start.Add(m.p.FirstBytes), timeoutFirstBytes)
	case m.next < len(m.p.Stages):
		sooner(m.waitSince.Add(m.p.Stages[m.next].Timeout), timeoutStage)
	}
	if m.panicking {
		sooner(m.panicSince.Add(panicGrace), timeoutPanic)
	}
	return at, which
}

// Deadline is when Tick must next be called.
func (m *Machine) Deadline() time.Time {
	if m.done {
		return time.Time{}
	}
	at, _ := m.nextTimeout()
	return at
}

// Tick checks the timeouts at now. Each deadline that has passed by now
// takes effect at its own time, in the order they fell.
func (m *Machine) Tick(now time.Time) []Event {
	m.expire(now)
	return m.take()
}

func (m *Machine) expire(now time.Time) {
	for !m.done {
		at, which := m.nextTimeout()
		if now.Before(at) {
			return
		}
		switch which {
		case timeoutPanic:
			m.failPanic(at)
		case timeoutWholeBoot:
			m.fail(at, ReasonBootTimeout, fmt.Sprintf("the boot did not finish within %s (waiting for %s)", m.p.WholeBoot, m.Current()))
		case timeoutFirstBytes:
			m.fail(at, ReasonNoOutput, fmt.Sprintf("no console output within %s: check the console cable, the baud rate and the board's power", m.p.FirstBytes))
		case timeoutStage:
			st := m.p.Stages[m.next]
			if st.Optional {
				// Skipped when its time was up; the next stage's wait
				// starts then.
				m.stages = append(m.stages, StageTime{Name: st.Name, At: at.Sub(m.start), Skipped: true})
				m.emit(Event{Kind: EventStage, At: at.Sub(m.start), Stage: st.Name, Skipped: true})
				m.next, m.waitSince = m.next+1, at
				continue
			}
			detail := fmt.Sprintf("%s not reached within %s", st.Name, st.Timeout)
			if m.split.Garbage() {
				detail += "; the console shows mostly unreadable bytes: baud mismatch or line noise"
			}
			if m.next == m.installIdx && m.installIdx >= 0 {
				detail += " (no install boot seen: was the image written, or did the board boot an older system?)"
			}
			m.fail(at, ReasonStageTimeout, detail)
		}
	}
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
	return watch(ctx, m, nil, chunks, onEvent)
}

// watch is Watch, fed first the chunks held (read earlier, kept for it).
func watch(ctx context.Context, m *Machine, held []Chunk, chunks <-chan Chunk, onEvent func(Event)) Verdict {
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
		if len(held) > 0 {
			c := held[0]
			held = held[1:]
			if c.Gap != "" {
				deliver(m.Gap(c.At, c.Gap))
			} else {
				deliver(m.Feed(c.At, c.Data))
			}
			deliver(m.Tick(time.Now()))
			if !m.Done() {
				timer.Reset(time.Until(m.Deadline()))
			}
			continue
		}
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
