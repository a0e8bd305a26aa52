package lines

import (
	"context"
	"errors"
	"fmt"

	"github.com/flashstation/flashstation/ledger"
)

// ReasonBatchEnded is the abort of a unit still in work when the
// operator ended its batch.
const ReasonBatchEnded = "batch-ended"

// errBatchEnded is the cause of a line's batch context once it ended.
var errBatchEnded = errors.New("the batch ended")

// batchRun is a line's batch while the station runs: the boards it took
// and the boards that are done with it. Its planned count is reached when
// that many different boards ended a unit pass, fail or error (an aborted
// board will be worked again); then the batch closes and the line takes
// no new board. A slot takes a new board only while the batch has room
// for it, so a batch never makes more boards than planned.
type batchRun struct {
	ctx    context.Context // cancelled when the operator ends the batch
	cancel context.CancelCauseFunc
	taken  map[string]bool // boards that started a unit in the batch
	done   map[string]bool // boards with a pass, fail or error
	closed string          // why it closed ("" while open)
}

func newBatchRun(parent context.Context) *batchRun {
	ctx, cancel := context.WithCancelCause(parent)
	return &batchRun{ctx: ctx, cancel: cancel, taken: map[string]bool{}, done: map[string]bool{}}
}

// boardOf names a unit's board for the batch's counts: its hardware
// serial, or the unit itself when the board gave none.
func boardOf(hw string, unit int64) string {
	if hw != "" {
		return hw
	}
	return fmt.Sprintf("unit:%d", unit)
}

// resume counts what a batch already holds (a station restarted after it
// was killed): the boards done with it. A board whose units were all
// aborted holds no place: it takes one again if it comes back, and the
// batch can still be completed without it.
func (b *batchRun) resume(units []ledger.Unit) {
	for _, u := range units {
		switch u.State {
		case ledger.UnitPass, ledger.UnitFail, ledger.UnitError:
			k := boardOf(u.HWSerial, u.ID)
			b.taken[k], b.done[k] = true, true
		}
	}
}

// admit reports whether a slot may start a unit for a board, and why not;
// a new board's place in the batch is taken at once, so two slots never
// both take the last place.
// It returns the place it took ("" for a board the batch holds already).
func (lr *lineRun) admit(slot, hw string) (place string, ok bool, why string) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	b, planned := lr.run, lr.batch.Planned
	switch {
	case b.closed == closedImageRefused:
		return "", false, fmt.Sprintf("line %s is held, its image is refused (%s): board %s is not touched", lr.cfg.ID, lr.gate.Cause, hw)
	case b.closed != "":
		return "", false, fmt.Sprintf("batch %d of line %s is %s: board %s waits for the next run", lr.batch.ID, lr.cfg.ID, closedWords(b.closed), hw)
	case hw != "" && b.taken[hw]:
		return "", true, "" // the same board again (a retry)
	case planned > 0 && len(b.taken) >= planned:
		return "", false, fmt.Sprintf("batch %d of line %s has its %d boards: board %s waits for the next batch", lr.batch.ID, lr.cfg.ID, planned, hw)
	}
	place = placeOf(slot, hw)
	b.taken[place] = true
	return place, true, ""
}

// placeOf is the place a board takes in its batch until its unit has an
// id: its hardware serial, or its slot for a board without one.
func placeOf(slot, hw string) string {
	if hw != "" {
		return hw
	}
	return "slot:" + slot
}

func closedWords(reason string) string {
	switch reason {
	case ledger.BatchComplete:
		return "complete"
	case ledger.BatchOperator:
		return "ended by the operator"
	case closedImageRefused:
		return "held: its image is refused"
	}
	return "closed"
}

// started gives the place admit took to the board's unit (unit 0: the
// unit could not be recorded, and the place is free again). A board the
// batch held already ("" place) keeps its place either way.
func (lr *lineRun) started(place, hw string, unit int64) {
	if place == "" {
		return
	}
	lr.mu.Lock()
	defer lr.mu.Unlock()
	delete(lr.run.taken, place)
	if unit != 0 {
		lr.run.taken[boardOf(hw, unit)] = true
	}
}

// unitEnded counts a unit's outcome; it closes the batch when its planned
// boards are done.
func (p *Pipeline) unitEnded(lr *lineRun, hw string, unit int64, outcome string) {
	lr.mu.Lock()
	if outcome == ledger.UnitPass || outcome == ledger.UnitFail || outcome == ledger.UnitError {
		lr.run.done[boardOf(hw, unit)] = true
	}
	complete := lr.batch.Planned > 0 && len(lr.run.done) >= lr.batch.Planned && lr.run.closed == ""
	lr.mu.Unlock()
	if complete {
		p.closeBatch(lr, ledger.BatchComplete)
	}
}

// closeBatch closes a line's batch once, in the ledger and for its slots.
func (p *Pipeline) closeBatch(lr *lineRun, reason string) {
	lr.mu.Lock()
	if lr.run.closed != "" {
		lr.mu.Unlock()
		return
	}
	lr.run.closed = reason
	id := lr.batch.ID
	lr.mu.Unlock()
	if err := p.led.CloseBatch(context.Background(), id, reason); err != nil {
		p.log.Error().Err(err).Str("line", lr.cfg.ID).Int64("batch", id).Msg("cannot close the batch")
	} else if b, err := p.led.Batch(context.Background(), id); err == nil {
		lr.mu.Lock()
		lr.batch.State, lr.batch.CloseReason, lr.batch.ClosedAt = b.State, b.CloseReason, b.ClosedAt
		lr.mu.Unlock()
	}
	p.log.Info().Str("line", lr.cfg.ID).Int64("batch", id).Str("reason", reason).Msg("batch closed")
	p.emit(Event{Kind: EventNotice, Line: lr.cfg.ID, Text: fmt.Sprintf("batch %d of line %s is %s", id, lr.cfg.ID, closedWords(reason))})
	p.checkDone()
}

// EndBatch ends a line's batch now (the operator's decision): boards in
// work are stopped and end aborted (batch-ended), and the line takes no
// new board.
func (p *Pipeline) EndBatch(line string) error {
	lr, ok := p.lines[line]
	if !ok {
		return fmt.Errorf("no line %q", line)
	}
	p.operatorAction(line, "", "end batch")
	lr.run.cancel(errBatchEnded)
	p.closeBatch(lr, ledger.BatchOperator)
	return nil
}

// checkDone closes Done once every line's batch is closed.
func (p *Pipeline) checkDone() {
	for _, lr := range p.lines {
		lr.mu.Lock()
		closed := lr.run.closed != ""
		lr.mu.Unlock()
		if !closed {
			return
		}
	}
	p.doneOnce.Do(func() { close(p.done) })
}

// stopBatches closes every batch still open at a clean stop: a new run
// opens new ones (a killed station's batches stay open and are resumed).
func (p *Pipeline) stopBatches() {
	for _, lr := range p.lines {
		p.closeBatch(lr, ledger.BatchStopped)
	}
}
