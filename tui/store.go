package tui

import (
	"time"

	"github.com/flashstation/flashstation/lines"
)

// consoleKeep is how many console lines a slot keeps for its detail view
// (the whole transcript is in the ledger's evidence).
const consoleKeep = 2000

// mark is one step of a unit's timeline: a slot state or a boot stage.
type mark struct {
	Name    string
	At      time.Time
	Skipped bool
	Stage   bool // a boot stage (else a slot state)
}

// phase is one flash phase (write, verify) as progress reported it.
type phase struct {
	Done, Total int64
	Rate        float64
	ETA         time.Duration
	Start, Last time.Time
}

// slotData is what the interface knows of a slot: the pipeline's view of
// it and what the events told of its current unit.
type slotData struct {
	View     lines.SlotView
	Unit     int64
	Console  []string // ring: the last consoleKeep lines
	Timeline []mark
	Phases   map[string]*phase
	Flash    *lines.FlashFigures
	Ended    time.Time // the verdict's time
	// Last is the slot's last verdict, still shown once the board is gone.
	Last *verdict
}

type verdict struct {
	State, Reason, HWSerial, Serial string
	Detail                          string
	Attempt                         int
	Unit                            int64
	Started, At                     time.Time
	// Cleared: the operator dealt with the removed board (c).
	Cleared bool
}

// final is the verdict of the slot's current unit once it ended (nil
// while it runs, or when the interface saw no verdict for it).
func (d *slotData) final() *verdict {
	if d.Ended.IsZero() || d.Last == nil || d.Last.Unit != d.Unit {
		return nil
	}
	return d.Last
}

// started is when the slot's current unit began: the pipeline's view
// while the board is in, else the unit's first mark (a pulled board's
// view is reset).
func (d *slotData) started() time.Time {
	if !d.View.StartedAt.IsZero() {
		return d.View.StartedAt
	}
	if len(d.Timeline) > 0 {
		return d.Timeline[0].At
	}
	return time.Time{}
}

// lastLines returns up to n console lines ending `back` lines before the
// newest.
func (d *slotData) lastLines(n, back int) []string {
	end := len(d.Console) - back
	if end < 0 {
		end = 0
	}
	start := end - n
	if start < 0 {
		start = 0
	}
	return d.Console[start:end]
}

// store holds every slot's data, in configuration order.
type store struct {
	order   []string
	byID    map[string]*slotData
	health  []lines.LineHealth
	notices []notice
	done    bool // every line finished its batch
}

type notice struct {
	At   time.Time
	Slot string
	Text string
}

func newStore(views []lines.SlotView) *store {
	s := &store{byID: map[string]*slotData{}}
	s.refresh(views)
	return s
}

// refresh takes the pipeline's authoritative slot views.
func (s *store) refresh(views []lines.SlotView) {
	for _, v := range views {
		d, ok := s.byID[v.ID]
		if !ok {
			d = &slotData{Phases: map[string]*phase{}}
			s.byID[v.ID] = d
			s.order = append(s.order, v.ID)
		}
		d.View = v
		if v.Unit > d.Unit { // unit ids only grow
			d.newUnit(v.Unit)
		}
		// A verdict applied before this view came (a unit that started
		// and ended between two refreshes) takes its start and attempt.
		if l := d.Last; l != nil && l.Unit == v.Unit && v.Unit != 0 {
			if l.Started.IsZero() || l.Started.After(l.At) {
				l.Started = v.StartedAt
			}
			l.Attempt = max(l.Attempt, v.Attempt)
		}
		if v.State == lines.StateDisabled && d.Last != nil {
			d.Last.Cleared = true // out of service: its last verdict was dealt with
		}
	}
}

func (d *slotData) newUnit(id int64) {
	d.Unit = id
	d.Console = d.Console[:0]
	d.Timeline = nil
	d.Phases = map[string]*phase{}
	d.Flash = nil
	d.Ended = time.Time{}
}

func (s *store) slot(id string) *slotData { return s.byID[id] }

// apply takes one event into its slot's data.
func (s *store) apply(e lines.Event) {
	if e.Kind == lines.EventNotice {
		s.notices = append(s.notices, notice{At: e.At, Slot: e.Slot, Text: e.Text})
		if len(s.notices) > 50 {
			s.notices = s.notices[len(s.notices)-50:]
		}
		return
	}
	d := s.byID[e.Slot]
	if d == nil {
		return
	}
	switch {
	case e.Unit > d.Unit:
		d.newUnit(e.Unit)
	case e.Unit != 0 && e.Unit < d.Unit:
		return // a late event of an earlier unit
	}
	switch e.Kind {
	case lines.EventState:
		d.View.State = e.State
		switch e.State {
		case lines.StateIdle, lines.StateDisabled, lines.StateStopped:
		default:
			if n := len(d.Timeline); n == 0 || d.Timeline[n-1].Name != e.State {
				d.Timeline = append(d.Timeline, mark{Name: e.State, At: e.At})
			}
		}
		if e.State == lines.StatePass || e.State == lines.StateFail {
			d.Ended = e.At
		}
	case lines.EventProgress:
		p := d.Phases[e.Progress.Phase]
		if p == nil {
			p = &phase{Start: e.At}
			d.Phases[e.Progress.Phase] = p
		}
		p.Done, p.Total, p.Rate, p.ETA, p.Last = e.Progress.Done, e.Progress.Total, e.Progress.Rate, e.Progress.ETA, e.At
		d.View.Progress = e.Progress
		d.View.Stage = e.Progress.Phase
	case lines.EventFlash:
		d.Flash = e.Flash
	case lines.EventStage:
		d.Timeline = append(d.Timeline, mark{Name: e.Stage, At: e.At, Skipped: e.Skipped, Stage: true})
		if !e.Skipped {
			d.View.Stage = e.Stage
		}
	case lines.EventLine:
		if len(d.Console) >= consoleKeep {
			n := copy(d.Console, d.Console[len(d.Console)-consoleKeep/2:])
			d.Console = d.Console[:n]
		}
		d.Console = append(d.Console, e.Text)
		d.View.LastLine = e.Text
	case lines.EventVerdict:
		d.Last = &verdict{State: e.State, Reason: e.Reason, HWSerial: e.HWSerial, Serial: e.Serial, Detail: e.Detail, Unit: d.Unit, At: e.At,
			Attempt: d.View.Attempt, Started: d.View.StartedAt}
		d.View.State = e.State
		d.View.Reason, d.View.Detail = e.Reason, e.Detail
		if e.Serial != "" {
			d.View.Serial = e.Serial
		}
		if d.Ended.IsZero() {
			d.Ended = e.At
		}
	}
}

// working counts the slots with a board in work, by state.
func (s *store) working() (total int, byState map[string]int) {
	byState = map[string]int{}
	for _, id := range s.order {
		if st := s.byID[id].View.State; working(st) {
			byState[st]++
			total++
		}
	}
	return total, byState
}

// working reports whether a slot in this state has a board in work.
func working(state string) bool {
	switch state {
	case lines.StatePresent, lines.StateFlashing, lines.StateBooting, lines.StateRegister:
		return true
	}
	return false
}

// batches are the ids of the lines' batches.
func (s *store) batches() []int64 {
	var ids []int64
	for _, h := range s.health {
		if h.Batch.ID != 0 {
			ids = append(ids, h.Batch.ID)
		}
	}
	return ids
}
