package serialvault

import (
	"fmt"
	"sync"
	"time"
)

// WindowSpec is what a unit's registration window expects.
type WindowSpec struct {
	// Unit is the unit's ledger id (0: none, as for a standalone proxy's
	// expected serial); a serial recorded through the window is linked to it.
	Unit     int64
	Slot     string
	HWSerial string
	// Expected is the serial the board will propose. It is "" on a line
	// that cannot predict its serials: such a window takes a request only
	// while it is the line's one open window.
	Expected string
}

// A Window is a unit's registration window. While it is open the line's
// proxy forwards the serial requests that match it to the vault, one at a
// time, until one serial is recorded for it: after that, other requests
// for it are refused. Refusals of requests that matched it are kept as its
// last refusal. Captures and refusals belong to the window that took the
// request; a window opened later never sees them.
type Window struct {
	WindowSpec
	ID     uint64
	Opened time.Time

	ws *Windows
	// busy holds one token: one vault call for the window at a time.
	busy chan struct{}

	// Guarded by ws.mu.
	closed  bool
	binding bool // a serial for the window is being written to the ledger
	// signed: the vault signed a serial for the window that could not be
	// written yet; it waits for its device's retry, and the window seeks
	// no other identity.
	signed  bool
	capture *Capture
	refusal *Refusal
	changed chan struct{} // closed and replaced on every change
}

// Windows are a line's registration windows. The station opens one per
// unit when the unit's boot is triggered and closes it when the unit
// ends; the proxy consults them for every serial request.
type Windows struct {
	// Predicted says the line knows each board's serial in advance
	// (registration.expected-serial): requests are matched by serial.
	predicted bool
	now       func() time.Time

	mu     sync.Mutex
	open   map[uint64]*Window
	nextID uint64
}

// NewWindows returns a line's windows. predicted says whether each window
// names the serial its board will propose.
func NewWindows(predicted bool) *Windows {
	return &Windows{predicted: predicted, now: time.Now, open: map[uint64]*Window{}}
}

// Predicted reports whether windows are matched by expected serial.
func (ws *Windows) Predicted() bool { return ws.predicted }

// ConflictError is a window that cannot open: another open window of the
// line expects the same serial (two boards report one hardware serial).
type ConflictError struct {
	Serial string
	Other  WindowSpec // the open window that expects it
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("serial %s is already expected by the board in slot %s (unit %d): two boards report one hardware serial",
		e.Serial, e.Other.Slot, e.Other.Unit)
}

// Open opens a window. On a predicted line the spec must name its expected
// serial, and no other open window may expect it (*ConflictError).
func (ws *Windows) Open(spec WindowSpec) (*Window, error) {
	if ws.predicted && spec.Expected == "" {
		return nil, fmt.Errorf("registration window for slot %s: no expected serial", spec.Slot)
	}
	if !ws.predicted {
		spec.Expected = ""
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.predicted {
		for _, o := range ws.open {
			if o.Expected == spec.Expected {
				return nil, &ConflictError{Serial: spec.Expected, Other: o.WindowSpec}
			}
		}
	}
	ws.nextID++
	w := &Window{WindowSpec: spec, ID: ws.nextID, Opened: ws.now(), ws: ws,
		busy: make(chan struct{}, 1), changed: make(chan struct{})}
	ws.open[w.ID] = w
	return w, nil
}

// OpenCount returns the number of open windows.
func (ws *Windows) OpenCount() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.open)
}

func (w *Window) notifyLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// State returns the window's serial (nil: none yet), its last refusal and
// a channel closed at its next change.
func (w *Window) State() (*Capture, *Refusal, <-chan struct{}) {
	w.ws.mu.Lock()
	defer w.ws.mu.Unlock()
	return w.capture, w.refusal, w.changed
}

// Close closes the window (again: a no-op) and returns what it got. A
// serial being written for it when it closes is waited for, so the unit
// and the ledger agree on whether the unit got it.
func (w *Window) Close() (*Capture, *Refusal) {
	w.ws.mu.Lock()
	defer w.ws.mu.Unlock()
	for w.binding {
		ch := w.changed
		w.ws.mu.Unlock()
		<-ch
		w.ws.mu.Lock()
	}
	if !w.closed {
		w.closed = true
		delete(w.ws.open, w.ID)
		w.notifyLocked()
	}
	return w.capture, w.refusal
}

// matchKind is how a serial request relates to the line's windows.
type matchKind int

const (
	matchOK        matchKind = iota
	matchNone                // no open window expects the serial
	matchAmbiguous           // unpredicted line, several windows open
	matchTaken               // the window has its identity already
)

// match finds the window a request for serial belongs to.
func (ws *Windows) match(serial string) (*Window, matchKind) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var w *Window
	if ws.predicted {
		for _, o := range ws.open {
			if o.Expected == serial {
				w = o
			}
		}
	} else {
		switch len(ws.open) {
		case 0:
		case 1:
			for _, o := range ws.open {
				w = o
			}
		default:
			return nil, matchAmbiguous
		}
	}
	switch {
	case w == nil:
		return nil, matchNone
	case w.capture != nil || w.binding || w.signed:
		return w, matchTaken
	}
	return w, matchOK
}

// refused keeps a refusal of a request that matched the window.
func (w *Window) refused(r Refusal) {
	w.ws.mu.Lock()
	defer w.ws.mu.Unlock()
	if w.closed {
		return
	}
	r.Unit, r.Slot = w.Unit, w.Slot
	w.refusal = &r
	w.notifyLocked()
}

// bind starts binding a serial to the window: false when the window is
// closed or has its identity (the serial is then recorded without a unit).
func (w *Window) bind() bool {
	if w == nil {
		return false
	}
	w.ws.mu.Lock()
	defer w.ws.mu.Unlock()
	if w.closed || w.capture != nil || w.binding {
		return false
	}
	w.binding = true
	return true
}

// bound ends a bind: c is the recorded serial, nil when it could not be
// recorded (the window binds the device's retry, and only it).
func (w *Window) bound(c *Capture) {
	w.ws.mu.Lock()
	defer w.ws.mu.Unlock()
	w.binding = false
	if c != nil {
		w.capture = c
	} else {
		w.signed = true
	}
	w.notifyLocked()
}
