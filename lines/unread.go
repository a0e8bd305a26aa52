package lines

import (
	"context"
	"fmt"
	"time"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/usb"
)

// A board of a console-capture line registers with the vault itself. When
// the station stops (killed, or past its stop's grace) while such a board
// is booting or registering, the board goes on, the vault signs its serial,
// and the board is the only place that holds it. At the next start, before
// the slot takes a new board, the station logs in on the slot's console
// and reads that serial for the interrupted unit ("unread" units). The
// unit stays interrupted (its boot was not watched to its end); the serial
// is recorded, so the ledger agrees with the vault's signing log.

// StageRecover is the stage of a slot reading, after a restart, the serial
// of the board its interrupted unit left registering.
const StageRecover = "recover"

// findUnread gives each console-capture slot whose newest unit was
// interrupted after its board's boot, with no serial recorded, that unit.
func (p *Pipeline) findUnread(ctx context.Context) error {
	for _, s := range p.slots {
		lr := s.line
		if lr.cfg.Capture.Method != CaptureConsole || lr.cfg.Capture.User == "" || s.cfg.Disabled {
			continue
		}
		units, err := p.led.Units(ctx, ledger.UnitFilter{LineID: lr.cfg.ID, Limit: 8*len(p.slots) + 16})
		if err != nil {
			return err
		}
		for _, u := range units {
			if u.SlotID != s.cfg.ID {
				continue
			}
			// The newest unit of the slot only.
			if u.State == ledger.UnitAborted && u.Reason == ReasonInterrupted && u.Serial == "" && booted(u.Stage) {
				as, err := p.led.SerialAssertions(ctx, ledger.AssertionFilter{UnitID: u.ID})
				if err != nil {
					return err
				}
				if len(as) == 0 {
					s.unread = &u
				}
			}
			break
		}
	}
	return nil
}

// booted reports whether a unit in this ledger stage had its boot
// triggered (or may have).
func booted(stage string) bool {
	switch stage {
	case "", "present", "flash":
		return false
	}
	return true
}

// readUnread reads the serial of the board the slot's interrupted unit
// left registering, and records it for that unit. It gives up when a board
// in flash mode is (or comes) in the slot: that is not the registered
// board any more, or it was reset.
func (s *slotRun) readUnread(ctx context.Context) {
	old := *s.unread
	s.unread = nil
	p := s.p
	rctx, cancel := context.WithTimeout(ctx, p.o.ProofWait+time.Minute)
	defer cancel()
	// A board in flash mode from now on cancels the read (setPresence).
	s.mu.Lock()
	s.cancelRead = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.cancelRead = nil
		s.mu.Unlock()
	}()
	if p.flashModeBoardIn(s) {
		p.log.Info().Str("slot", s.cfg.ID).Int64("unit", old.ID).Msg("a board in flash mode is in the slot: the interrupted unit's serial is not read")
		return
	}
	u := &unitRun{s: s, ctx: rctx, id: old.ID, batch: old.BatchID, dev: usb.Device{Serial: old.HWSerial}, start: time.Now(), started: old.StartedAt}
	s.update(func(v *SlotView) {
		*v = SlotView{ID: v.ID, Line: v.Line, State: StateRegister, Stage: StageRecover, HWSerial: old.HWSerial, Unit: old.ID,
			Attempt: old.Attempt, StartedAt: u.start, Disabled: v.Disabled}
	})
	s.state(StateRegister, old.ID)
	detail, ok := u.readUnread(rctx)
	if ok {
		u.record("recovered", StageRecover, detail, nil)
	} else {
		u.record("recovered", StageRecover, "not read: "+detail, nil)
		detail = "the serial of unit " + fmt.Sprint(old.ID) + " could not be read after the restart: " + detail +
			"; if the vault signed it, flashstation reconcile names it"
	}
	u.event(Event{Kind: EventNotice, HWSerial: old.HWSerial, Text: "slot " + s.cfg.ID + ": " + detail})
	s.update(func(v *SlotView) {
		*v = SlotView{ID: v.ID, Line: v.Line, State: StateIdle, Disabled: v.Disabled, Detail: detail}
	})
	s.state(StateIdle, 0)
}

// readUnread logs in on the slot's console and records the board's serial.
func (u *unitRun) readUnread(ctx context.Context) (string, bool) {
	s, p, lr := u.s, u.s.p, u.s.line
	raw, _ := p.transcriptPaths(u.batch, u.id, s.cfg.ID+"-recover")
	tr, err := console.CreateTranscript(raw)
	if err != nil {
		return err.Error(), false
	}
	defer func() {
		tr.Close()
		if size, sum, err := fileSum(raw); err == nil {
			_, _ = p.led.AddTranscript(context.Background(), ledger.Transcript{UnitID: u.id, SlotID: s.cfg.ID, Kind: ledger.TranscriptRaw, Path: raw, Size: size, SHA256: sum})
		}
	}()
	port, err := console.ResolvePort(s.cfg.Console.Port)
	if err != nil {
		return err.Error(), false
	}
	con, err := console.OpenConsole(ctx, &console.Capture{Path: port, Baud: s.cfg.Console.Baud, Transcript: tr})
	if err != nil {
		return err.Error(), false
	}
	defer con.Close()
	step := min(p.o.ProofWait, time.Minute)
	if err := console.ToLoginPrompt(ctx, con, step, nil); err != nil {
		return "the console: " + err.Error(), false
	}
	text, err := console.CaptureSerial(ctx, con, console.LoginOptions{User: lr.cfg.Capture.User, Password: lr.password,
		Wait: p.o.ProofWait, Poll: time.Second, Step: step})
	if err != nil {
		return "the console: " + err.Error(), false
	}
	a, err := serialvault.Decode(text)
	var sr *serialvault.Serial
	if err == nil {
		sr, err = serialvault.AsSerial(a)
	}
	if err == nil {
		_, err = lr.keys.Verify(a)
	}
	if err == nil && (sr.BrandID != lr.model.BrandID || sr.Model != lr.model.Model) {
		err = fmt.Errorf("serial is for %s/%s, the line makes %s/%s", sr.BrandID, sr.Model, lr.model.BrandID, lr.model.Model)
	}
	if err != nil {
		return "the board's serial assertion: " + err.Error(), false
	}
	rec := ledger.SerialAssertion{Text: a.Encode(), BrandID: sr.BrandID, Model: sr.Model,
		Serial: sr.Serial, Revision: sr.Revision(), DeviceKeyID: sr.DeviceKeyID, LineID: lr.cfg.ID, UnitID: u.id,
		Via: ledger.ViaConsole, Duplicate: sr.Revision() > 1, ReceivedAt: time.Now()}
	known, err := p.led.SerialAssertions(ctx, ledger.AssertionFilter{Serial: sr.Serial})
	if err != nil {
		return "the ledger: " + err.Error(), false
	}
	for _, k := range known {
		if k.DeviceKeyID == sr.DeviceKeyID && k.Revision == sr.Revision() {
			return fmt.Sprintf("the board in the slot holds serial %s revision %d, which the ledger has (assertion %d, unit %d): not the registration unit %d was waiting for",
				sr.Serial, sr.Revision(), k.ID, k.UnitID, u.id), false
		}
	}
	expected, _ := ExpandSerial(lr.cfg.Registration.ExpectedSerial, map[string]string{
		"hw": u.dev.Serial, "slot": s.cfg.ID, "line": lr.cfg.ID, "station": p.st.ID})
	// The unit's registration: the serial the board was expected to get
	// (when the line predicts it), signed after the unit started.
	bound := (expected == "" || expected == sr.Serial) && !sr.Timestamp.Before(u.started.Add(-clockSlack))
	if !bound {
		rec.UnitID = 0 // another board than the unit's: kept, bound to no unit
	}
	if err := u.keepSerial(ctx, rec); err != nil {
		return err.Error(), false
	}
	if !bound {
		return fmt.Sprintf("the board in the slot holds serial %s (signed %s), not the one unit %d's board %s was expected to get (%s, signed after %s): recorded as a serial without a unit",
			sr.Serial, sr.Timestamp.Format(time.RFC3339), u.id, u.dev.Serial, expected, u.started.Format(time.RFC3339)), true
	}
	return fmt.Sprintf("serial %s revision %d (device key %.12s...), signed while the station was stopped, read from board %s and recorded for unit %d; the unit stays interrupted: flash the board again or set it aside",
		sr.Serial, sr.Revision(), sr.DeviceKeyID, u.dev.Serial, u.id), true
}

// flashModeBoardIn looks at the slot's ports now.
func (p *Pipeline) flashModeBoardIn(s *slotRun) bool {
	devs, err := p.o.Hardware.Devices()
	if err != nil {
		return false
	}
	for i := range devs {
		for _, port := range s.cfg.USBPorts {
			if devs[i].PortPath == port && inFlashMode(&devs[i]) {
				return true
			}
		}
	}
	return false
}
