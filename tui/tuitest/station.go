// Package tuitest provides a fake station for the bench interface's tests
// and benchmarks: slots whose views the test sets, and a record of the
// operator's requests.
package tuitest

import (
	"fmt"
	"sync"

	"github.com/flashstation/flashstation/lines"
)

// Station is a fake tui.Station.
type Station struct {
	mu      sync.Mutex
	slots   []lines.SlotView
	health  []lines.LineHealth
	actions []string
}

// New returns a station with the given slots and lines.
func New(slots []lines.SlotView, health []lines.LineHealth) *Station {
	return &Station{slots: append([]lines.SlotView(nil), slots...), health: health}
}

// Slots returns the slots' views.
func (s *Station) Slots() []lines.SlotView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]lines.SlotView(nil), s.slots...)
}

// Health returns the lines' health.
func (s *Station) Health() []lines.LineHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]lines.LineHealth(nil), s.health...)
}

// Set changes a slot's view.
func (s *Station) Set(v lines.SlotView) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.slots {
		if s.slots[i].ID == v.ID {
			s.slots[i] = v
			return
		}
	}
	s.slots = append(s.slots, v)
}

// SetHealth changes the lines' health.
func (s *Station) SetHealth(h []lines.LineHealth) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health = h
}

// Retry records a retry request.
func (s *Station) Retry(slot string) error { return s.act("retry " + slot) }

// EndBatch records a request to end a line's batch.
func (s *Station) EndBatch(line string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.slots {
		if v.Line == line {
			s.actions = append(s.actions, "end batch "+line)
			return nil
		}
	}
	return fmt.Errorf("no line %q", line)
}

// SetDisabled records a disable or enable request.
func (s *Station) SetDisabled(slot string, disabled bool) error {
	if disabled {
		return s.act("disable " + slot)
	}
	return s.act("enable " + slot)
}

func (s *Station) act(a string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.slots {
		if "retry "+v.ID == a || "disable "+v.ID == a || "enable "+v.ID == a {
			s.actions = append(s.actions, a)
			return nil
		}
	}
	return fmt.Errorf("no slot in %q", a)
}

// SetOperator records the operator named at the bench ("operator NAME").
func (s *Station) SetOperator(name string) error {
	if name == "" {
		return fmt.Errorf("an operator needs a name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.actions = append(s.actions, "operator "+name)
	return nil
}

// Actions returns the requests received, in order.
func (s *Station) Actions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.actions...)
}
