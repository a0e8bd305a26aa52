package lines

import (
	"sync"
	"time"
)

// Slot states, in the order a board goes through them.
const (
	StateIdle     = "idle"     // no board
	StatePresent  = "present"  // a board appeared
	StateFlashing = "flashing" // writing (and reading back) the image
	StateBooting  = "booting"  // boot triggered, watching the console
	StateRegister = "register" // waiting for the serial assertion
	StatePass     = "pass"     // recorded: remove the board
	StateFail     = "fail"     // failed with a reason: remove the board
	StateDisabled = "disabled" // taken out of service by the operator
	StateStopped  = "stopped"  // the station is stopping
)

// EventKind says what an Event reports.
type EventKind string

// Event kinds.
const (
	EventState    EventKind = "state"    // a slot changed state
	EventProgress EventKind = "progress" // flash progress
	EventFlash    EventKind = "flash"    // a flash ended: its figures
	EventStage    EventKind = "stage"    // a boot stage was reached
	EventLine     EventKind = "line"     // a console line
	EventVerdict  EventKind = "verdict"  // a unit passed or failed
	EventNotice   EventKind = "notice"   // something the station wants seen (an unmatched serial, a resumed batch)
)

// Progress is a flash's progress.
type Progress struct {
	Phase string        `json:"phase"` // write, verify
	Done  int64         `json:"done"`
	Total int64         `json:"total"`
	Rate  float64       `json:"rate"` // bytes per second
	ETA   time.Duration `json:"eta"`
}

// FlashFigures are what a finished flash did.
type FlashFigures struct {
	Target   string        `json:"target"`
	Mapped   int64         `json:"mapped_bytes"`  // bytes the image maps (what is written)
	Written  int64         `json:"written_bytes"` // bytes written
	Write    time.Duration `json:"write"`
	Verify   time.Duration `json:"verify"`
	Verified bool          `json:"verified"`
	Note     string        `json:"note,omitempty"` // why there was no read-back
}

// Event is one thing that happened at the station, on the one stream the
// ledger and the interfaces consume.
type Event struct {
	At       time.Time
	Kind     EventKind
	Slot     string
	Line     string
	Unit     int64
	State    string
	Stage    string
	Skipped  bool
	Progress Progress
	Flash    *FlashFigures // EventFlash
	Text     string        // a console line, a notice
	HWSerial string
	Serial   string
	// Outcome of a verdict: pass, fail, error or aborted.
	Outcome string
	Reason  string
	Detail  string
}

// hub fans events out to subscribers. A slow subscriber loses progress
// and console lines (they are refreshed constantly) but never states,
// stages or verdicts: those block until delivered.
type hub struct {
	mu   sync.Mutex
	subs []chan Event
}

// Subscribe returns a channel of every event from now on.
func (h *hub) Subscribe(buffer int) <-chan Event {
	ch := make(chan Event, buffer)
	h.mu.Lock()
	h.subs = append(h.subs, ch)
	h.mu.Unlock()
	return ch
}

func (h *hub) publish(e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	h.mu.Lock()
	subs := h.subs
	h.mu.Unlock()
	for _, ch := range subs {
		if e.Kind == EventProgress || e.Kind == EventLine {
			select {
			case ch <- e:
			default:
			}
			continue
		}
		ch <- e
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ch := range h.subs {
		close(ch)
	}
	h.subs = nil
}
