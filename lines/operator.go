package lines

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flashstation/flashstation/ledger"
)

// operatorAtBench is who is at the bench: Options.Operator, or the name
// the bench interface asked for after the station started.
type operatorAtBench struct {
	mu   sync.Mutex
	name string
}

// Operator is the operator at the bench ("" until named).
func (p *Pipeline) Operator() string {
	p.op.mu.Lock()
	defer p.op.mu.Unlock()
	return p.op.name
}

// SetOperator names the operator at the bench (a name typed or a badge
// scanned): the lines' batches that have no operator yet get it in the
// ledger, and every operator action from now on records it. A batch that
// has an operator keeps it.
func (p *Pipeline) SetOperator(name string) error {
	name = strings.TrimSpace(name)
	if name == "" {
		return errors.New("an operator needs a name")
	}
	p.op.mu.Lock()
	p.op.name = name
	p.op.mu.Unlock()
	ids := make([]string, 0, len(p.lines))
	for id := range p.lines {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var errs []error
	for _, id := range ids {
		lr := p.lines[id]
		lr.mu.Lock()
		b := lr.batch
		lr.mu.Unlock()
		if b.ID == 0 || b.Operator != "" {
			continue
		}
		if err := p.led.SetBatchOperator(context.Background(), b.ID, name); err != nil {
			errs = append(errs, err)
			continue
		}
		lr.mu.Lock()
		if lr.batch.ID == b.ID {
			lr.batch.Operator = name
		}
		lr.mu.Unlock()
	}
	p.log.Info().Str("operator", name).Msg("operator at the bench")
	return errors.Join(errs...)
}

// operatorAction records in the ledger who asked for what: an operator
// event of the line's batch (retry, disable, enable, end batch) with the
// operator's name. A ledger that cannot take it is logged, not fatal: the
// action is done.
func (p *Pipeline) operatorAction(line, slot, action string) {
	name := p.Operator()
	var batch int64
	if lr := p.lines[line]; lr != nil {
		lr.mu.Lock()
		batch = lr.batch.ID
		lr.mu.Unlock()
	}
	who := name
	if who == "" {
		who = "an operator not named"
	}
	msg := action + " by " + who
	if slot != "" {
		msg = action + " " + slot + " by " + who
	}
	data, _ := json.Marshal(map[string]string{"operator": name, "action": action, "line": line, "slot": slot})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.led.AppendEvents(ctx, ledger.Event{At: time.Now(), BatchID: batch, SlotID: slot, Kind: ledger.EventOperator,
		Stage: action, Message: msg, Data: data})
	l := p.log.Info()
	if err != nil {
		l = p.log.Error().Err(err)
	}
	l.Str("operator", name).Str("line", line).Str("slot", slot).Str("action", action).Msg("operator action")
}
