package lines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/ledger/spool"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/usb"
)

// SlotView is what an interface shows of a slot.
type SlotView struct {
	ID        string
	Line      string
	State     string
	Stage     string
	HWSerial  string
	Serial    string
	Unit      int64
	Attempt   int
	Progress  Progress
	StartedAt time.Time
	LastLine  string
	Reason    string
	Detail    string
	// Outcome is the last unit's: pass, fail (the board's fault), error
	// (the station's) or aborted.
	Outcome   string
	Disabled  bool
	Duplicate bool
}

type slotRun struct {
	p    *Pipeline
	cfg  *Slot
	line *lineRun

	// wake tells the slot's loop that its ports or its controls changed.
	wake chan struct{}

	mu sync.Mutex
	v  SlotView
	// What is on the slot's ports (nil: nothing) and a count of its
	// changes, so a quick swap between two looks of the loop still counts.
	here    *usb.Device
	changes uint64
	// The operator's controls, kept until the loop acts on them, so none
	// is lost and none waits behind a board.
	disabled bool
	retry    bool
	// unread is the interrupted unit whose board's serial the slot reads
	// first (unread.go); cancelRead stops that read when a board in flash
	// mode shows.
	unread     *ledger.Unit
	cancelRead context.CancelFunc
}

func newSlotRun(p *Pipeline, cfg *Slot) *slotRun {
	s := &slotRun{p: p, cfg: cfg, line: p.lines[cfg.Line], wake: make(chan struct{}, 1), disabled: cfg.Disabled}
	s.v = SlotView{ID: cfg.ID, Line: cfg.Line, State: StateIdle, Disabled: cfg.Disabled}
	if cfg.Disabled {
		s.v.State = StateDisabled
	}
	return s
}

func (s *slotRun) view() SlotView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.v
}

func (s *slotRun) update(f func(v *SlotView)) SlotView {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.v)
	return s.v
}

func (s *slotRun) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// setPresence tells the slot what is on its ports (nil: none). Every
// change counts: a board pulled and another put in between two looks of
// the loop re-arms the slot as surely as an empty slot seen in between.
func (s *slotRun) setPresence(d *usb.Device) {
	s.mu.Lock()
	changed := !sameDevice(s.here, d)
	if changed {
		s.here = d
		s.changes++
		if s.cancelRead != nil && inFlashMode(d) {
			s.cancelRead()
		}
	}
	s.mu.Unlock()
	if changed {
		s.poke()
	}
}

// sameDevice reports whether two looks at a port saw the same device in
// the same mode (a re-enumeration gets a new address).
func sameDevice(a, b *usb.Device) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.PortPath == b.PortPath && a.Serial == b.Serial && a.Bus == b.Bus && a.Address == b.Address &&
		a.Fastboot == b.Fastboot && slices.Equal(a.Disks, b.Disks)
}

// Slots returns every slot's view, in configuration order.
func (p *Pipeline) Slots() []SlotView {
	out := make([]SlotView, len(p.slots))
	for i, s := range p.slots {
		out[i] = s.view()
	}
	return out
}

func (p *Pipeline) slot(id string) (*slotRun, error) {
	for _, s := range p.slots {
		if s.cfg.ID == id {
			return s, nil
		}
	}
	return nil, fmt.Errorf("no slot %q", id)
}

// Retry lets a slot start again with the board that is in it, once the
// board is in its flash mode: asked for after a verdict (the card shows
// PASS or FAIL), it waits for that; asked for while the board is in work,
// it is dropped.
func (p *Pipeline) Retry(slot string) error {
	s, err := p.slot(slot)
	if err != nil {
		return err
	}
	s.mu.Lock()
	switch s.v.State {
	case StatePass, StateFail, StateIdle, StateDisabled:
		s.retry = true
	}
	s.mu.Unlock()
	s.poke()
	p.operatorAction(s.cfg.Line, slot, "retry")
	return nil
}

// SetDisabled takes a slot out of service (or puts it back). A board
// already in work (or whose unit is starting at that instant) finishes its
// unit; no new one starts in the slot once it returns.
func (p *Pipeline) SetDisabled(slot string, disabled bool) error {
	s, err := p.slot(slot)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.disabled = disabled
	s.v.Disabled = disabled
	s.mu.Unlock()
	s.poke()
	action := "enable"
	if disabled {
		action = "disable"
	}
	p.operatorAction(s.cfg.Line, slot, action)
	return nil
}

func (s *slotRun) state(state string, unit int64) {
	v := s.update(func(v *SlotView) {
		v.State = state
		if state == StateIdle {
			*v = SlotView{ID: v.ID, Line: v.Line, State: StateIdle, Disabled: v.Disabled}
		}
	})
	s.p.emit(Event{Kind: EventState, Slot: s.cfg.ID, Line: s.cfg.Line, Unit: unit, State: state, HWSerial: v.HWSerial, Serial: v.Serial})
}

// inFlashMode reports whether a device is a board waiting to be written.
func inFlashMode(d *usb.Device) bool { return d != nil && (d.Fastboot || len(d.Disks) > 0) }

// run is the slot's life: wait for a board, work it, show the verdict
// until the board leaves (or a retry), again. Each look handles the
// operator's controls before what is on the ports, so a slot disabled
// before a board shows never takes it.
func (s *slotRun) run(ctx context.Context) {
	if s.unread != nil {
		s.readUnread(ctx)
	}
	shownDisabled := s.cfg.Disabled
	var worked uint64 // the ports' change count when the last unit ended
	for {
		if ctx.Err() != nil {
			s.state(StateStopped, 0)
			return
		}
		s.mu.Lock()
		disabled, retry, dev, changes := s.disabled, s.retry, s.here, s.changes
		if dev == nil {
			s.retry = false // the board left: nothing to retry
		}
		s.mu.Unlock()

		if disabled != shownDisabled {
			shownDisabled = disabled
			if disabled {
				s.state(StateDisabled, 0)
			} else {
				s.state(StateIdle, 0)
			}
		}
		if retry && !disabled && inFlashMode(dev) {
			s.state(StateIdle, 0)
		}
		if changes != worked && dev == nil {
			if st := s.view().State; st == StatePass || st == StateFail {
				s.state(StateIdle, 0) // the board was taken away
			}
		}
		if !disabled && inFlashMode(dev) && (retry || changes != worked) {
			if s.nowDisabled() {
				continue // disabled since the look above
			}
			s.mu.Lock()
			s.retry = false // taken by this unit
			s.mu.Unlock()
			if place, ok, why := s.line.admit(s.cfg.ID, dev.Serial); !ok {
				// The line's batch has no room: the board waits, said once.
				if why != s.view().Detail {
					s.update(func(v *SlotView) { v.Detail = why })
					s.p.emit(Event{Kind: EventNotice, Slot: s.cfg.ID, Line: s.cfg.Line, HWSerial: dev.Serial, Text: why})
				}
				worked = changes
			} else {
				s.work(ctx, *dev, place)
				// The board worked counts as seen; a change since (another
				// board swapped in while the unit ended, or the slot
				// emptied) is acted on at the next look.
				s.mu.Lock()
				worked = changes
				if sameDevice(s.here, dev) {
					worked = s.changes
				}
				s.mu.Unlock()
				continue
			}
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		}
	}
}

// unitRun is one board's attempt in a slot.
type unitRun struct {
	s       *slotRun
	ctx     context.Context // ends when the station stops or the batch ends
	id      int64
	batch   int64     // the unit's batch (0: the line's current one)
	started time.Time // when the unit started, as the ledger has it (a unit read again)
	dev     usb.Device
	start   time.Time
	// bootFrom is when the boot trigger powered the board on (zero: the
	// boot is timed from the watch's start).
	bootFrom time.Time
	con      *console.Console
	tr       *console.Transcript
	raw      string
	clean    string
	outcome  string // set once the unit ended
	// window is the unit's registration window on a proxy line, open from
	// its boot trigger to its end.
	window *serialvault.Window

	// unrecorded holds the unit's events the ledger could not take yet
	// (a full disk, a locked ledger): each record tries them again, in
	// order, with their own times, and the unit's end waits for them.
	evMu       sync.Mutex
	unrecorded []ledger.Event
}

func (u *unitRun) event(e Event) {
	e.Slot, e.Line, e.Unit = u.s.cfg.ID, u.s.cfg.Line, u.id
	u.s.p.emit(e)
}

// record appends an event to the ledger. One the ledger cannot take now
// is kept and sent again with the next (the verdict itself is written
// through FinishUnit, which waits for the ledger).
func (u *unitRun) record(kind, stage, message string, data any) {
	u.recordEvent(kind, stage, message, data, false)
}

// recordEvent records an event, or with queueOnly only queues it for the
// next write (the verdict goes with the unit's end).
func (u *unitRun) recordEvent(kind, stage, message string, data any, queueOnly bool) {
	var raw []byte
	if data != nil {
		raw, _ = json.Marshal(data)
	}
	u.evMu.Lock()
	defer u.evMu.Unlock()
	batch := u.batch
	if batch == 0 {
		batch = u.s.line.batch.ID
	}
	u.unrecorded = append(u.unrecorded, ledger.Event{At: time.Now(),
		BatchID: batch, UnitID: u.id, SlotID: u.s.cfg.ID, Kind: kind, Stage: stage, Message: message, Data: raw,
	})
	if !queueOnly {
		u.flushEventsLocked(context.Background())
	}
}

// flushEventsLocked sends the unrecorded events; u.evMu is held.
func (u *unitRun) flushEventsLocked(ctx context.Context) error {
	if len(u.unrecorded) == 0 {
		return nil
	}
	err := u.s.p.led.AppendEvents(ctx, u.unrecorded...)
	if err != nil {
		if len(u.unrecorded) == 1 { // said once per outage
			u.s.p.log.Error().Err(err).Str("slot", u.s.cfg.ID).Msg("cannot record the unit's events; kept, and sent again")
		}
		return err
	}
	u.unrecorded = nil
	return nil
}

// keepWriting runs a ledger write until it succeeds, waiting 1 s, 2 s, ...
// up to 30 s between tries; a ledger that cannot take it (a full disk, a
// locked file) holds this slot only, and the operator is told once. Once
// stop has ended it tries once more, briefly (the spool holds what
// matters), and returns the last error.
func (u *unitRun) keepWriting(stop context.Context, what string, write func(ctx context.Context) error) error {
	wait, said := time.Second, false
	for {
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if stop.Err() != nil {
			ctx, cancel = context.WithTimeout(ctx, stoppedWrite)
		}
		err := write(ctx)
		cancel()
		if err == nil || stop.Err() != nil {
			return err
		}
		if !said {
			said = true
			p := u.s.p
			p.log.Error().Err(err).Str("slot", u.s.cfg.ID).Msg("the ledger cannot record " + what + "; retrying")
			u.event(Event{Kind: EventNotice, Text: fmt.Sprintf("slot %s: the ledger cannot record %s (%v); retrying", u.s.cfg.ID, what, err)})
		}
		t := time.NewTimer(wait)
		select {
		case <-stop.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// stoppedWrite bounds a ledger write once the station is stopping.
const stoppedWrite = 2 * time.Second

// endUnit writes the unit's end (and the events before it), waiting for a
// ledger that cannot take it for as long as the station runs.
func (u *unitRun) endUnit(state, reason, detail string) error {
	return u.keepWriting(u.s.p.stopCtx, "the end of unit "+strconv.FormatInt(u.id, 10), func(ctx context.Context) error {
		u.evMu.Lock()
		err := u.flushEventsLocked(ctx)
		u.evMu.Unlock()
		if err != nil {
			return err
		}
		return u.s.p.led.FinishUnit(ctx, u.id, state, reason, detail)
	})
}

// fail ends the unit with a reason; the reason's class is the outcome
// (fail, error or aborted). Whatever a step reports once the station is
// stopping or the batch was ended, the unit is aborted, not failed.
func (u *unitRun) fail(reason, detail string) {
	if u.outcome != "" {
		return
	}
	if cause := context.Cause(u.ctx); cause != nil {
		stopped := ReasonInterrupted
		if errors.Is(cause, errBatchEnded) {
			stopped = ReasonBatchEnded
		}
		if reason != stopped {
			detail = fmt.Sprintf("%s (%s: %s)", ReasonFor(stopped).What, reason, detail)
			reason = stopped
		}
	}
	r := ReasonFor(reason)
	u.outcome = r.Class
	u.recordEvent("verdict", u.s.view().Stage, r.Class+": "+reason, map[string]string{"outcome": r.Class, "reason": reason, "detail": detail}, true)
	if err := u.endUnit(r.Class, reason, detail); err != nil {
		u.s.p.log.Error().Err(err).Int64("unit", u.id).Msg("cannot record the unit's end")
	}
	u.s.update(func(v *SlotView) { v.Reason, v.Detail, v.Outcome = reason, detail, r.Class })
	u.s.state(StateFail, u.id)
	u.event(Event{Kind: EventVerdict, State: StateFail, Outcome: r.Class, Reason: reason, Detail: detail, HWSerial: u.dev.Serial, Text: r.What + ": " + r.Advice})
	u.s.p.log.Warn().Str("slot", u.s.cfg.ID).Str("board", u.dev.Serial).Str("outcome", r.Class).Str("reason", reason).Str("detail", firstLine(detail)).Msg("unit did not pass")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// nowDisabled reports whether the operator has disabled the slot.
func (s *slotRun) nowDisabled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.disabled
}

// work is one unit of a board; place is the batch place admit took for a
// new board ("" for a board the batch holds already).
func (s *slotRun) work(ctx context.Context, dev usb.Device, place string) {
	p, lr := s.p, s.line
	hw := dev.Serial
	id, err := p.led.StartUnit(ctx, ledger.Unit{BatchID: lr.batch.ID, LineID: s.cfg.Line, SlotID: s.cfg.ID, HWSerial: hw, Stage: "present"})
	if err != nil {
		p.log.Error().Err(err).Str("slot", s.cfg.ID).Msg("cannot start unit")
		lr.started(place, hw, 0)
		s.update(func(v *SlotView) { v.Reason, v.Detail, v.Outcome = ReasonStorage, err.Error(), ClassError })
		s.state(StateFail, 0)
		return
	}
	unit, _ := p.led.Unit(ctx, id)
	lr.started(place, hw, id)
	// The unit's work stops when the station stops or the batch is ended.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(lr.run.ctx, func() { cancel(context.Cause(lr.run.ctx)) })()
	u := &unitRun{s: s, ctx: ctx, id: id, dev: dev, start: time.Now()}
	s.update(func(v *SlotView) {
		*v = SlotView{ID: v.ID, Line: v.Line, State: StatePresent, HWSerial: hw, Unit: id, Attempt: unit.Attempt, StartedAt: u.start, Disabled: v.Disabled}
	})
	s.state(StatePresent, id)
	u.record("state", "present", fmt.Sprintf("board %s on %s (%s)", hw, dev.PortPath, dev.Kind), dev)
	defer u.finish()

	// The console first, so the boot is seen from its first byte.
	u.raw, u.clean = p.transcriptPaths(lr.batch.ID, id, s.cfg.ID)
	if u.tr, err = console.CreateTranscript(u.raw); err != nil {
		u.fail(ReasonStorage, err.Error())
		return
	}
	port, err := console.ResolvePort(s.cfg.Console.Port)
	if err == nil {
		// The console outlives a stop (finish closes it): a board that is
		// registering gets its serial read in the stop's grace.
		u.con, err = console.OpenConsole(context.WithoutCancel(ctx), &console.Capture{Path: port, Baud: s.cfg.Console.Baud, Transcript: u.tr})
	}
	if err != nil {
		var pe *console.PortError
		if errors.As(err, &pe) {
			u.fail(pe.Reason, err.Error())
		} else {
			u.fail(console.ReasonPort, err.Error())
		}
		return
	}
	stopFollow := u.con.Follow(func(line string) {
		s.update(func(v *SlotView) { v.LastLine = line })
		u.event(Event{Kind: EventLine, Text: line})
	})

	job, ok := u.flash(ctx)
	stopFollow()
	if !ok {
		return
	}
	if !u.trigger(ctx, job) {
		return
	}
	v, ok := u.boot(ctx)
	if !ok {
		return
	}
	if !u.register(ctx, v) {
		return
	}
	// A signed serial is recorded whatever stops the station now: the
	// records of a registered board never take the work's context.
	view := s.view()
	u.recordEvent("verdict", "registered", "pass", map[string]any{"serial": view.Serial, "duplicate": view.Duplicate}, true)
	if err := u.endUnit(ledger.UnitPass, "", ""); err != nil {
		u.fail(ReasonStorage, err.Error())
		return
	}
	u.outcome = ledger.UnitPass
	s.update(func(v *SlotView) { v.Outcome = ledger.UnitPass })
	s.state(StatePass, id)
	u.event(Event{Kind: EventVerdict, State: StatePass, Outcome: ledger.UnitPass, HWSerial: hw, Serial: view.Serial})
	p.log.Info().Str("slot", s.cfg.ID).Str("board", hw).Str("serial", view.Serial).Dur("took", time.Since(u.start)).Msg("unit passed")
}

// finish closes the registration window and the console, and keeps the
// transcripts as evidence.
func (u *unitRun) finish() {
	if u.window != nil {
		u.window.Close()
	}
	if u.con != nil {
		u.con.Close()
	}
	if u.tr != nil {
		u.tr.Close()
	}
	if u.raw != "" {
		if err := renderCleanFile(u.raw, u.clean); err != nil {
			u.s.p.log.Warn().Err(err).Msg("clean transcript")
		}
		for _, t := range []struct{ path, kind string }{{u.raw, ledger.TranscriptRaw}, {u.clean, ledger.TranscriptClean}} {
			size, sum, err := fileSum(t.path)
			if err != nil {
				continue
			}
			rec := ledger.Transcript{UnitID: u.id, SlotID: u.s.cfg.ID, Kind: t.kind, Path: t.path, Size: size, SHA256: sum}
			if err := u.keepWriting(u.s.p.stopCtx, "a console transcript", func(ctx context.Context) error {
				_, err := u.s.p.led.AddTranscript(ctx, rec)
				return err
			}); err != nil {
				u.s.p.log.Error().Err(err).Msg("cannot record transcript")
			}
		}
	}
	if u.outcome == "" {
		// Stopped in the middle (the station is stopping).
		u.fail(ReasonInterrupted, "the station stopped while the board was in work")
	}
	u.s.p.unitEnded(u.s.line, u.dev.Serial, u.id, u.outcome)
}

func renderCleanFile(raw, clean string) error {
	f, err := os.Open(raw)
	if err != nil {
		return err
	}
	defer f.Close()
	recs, err := console.ReadTranscript(f)
	if err != nil && len(recs) == 0 {
		return err
	}
	out, err := os.Create(clean)
	if err != nil {
		return err
	}
	defer out.Close()
	return console.RenderClean(recs, out)
}

func fileSum(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

func (u *unitRun) setStage(stage string) {
	u.s.update(func(v *SlotView) { v.Stage = stage })
	_ = u.s.p.led.UpdateUnit(context.Background(), u.id, ledger.UnitProgress{Stage: stage})
}

// flash writes the line's image to the board; the job stays open for the
// boot trigger (a fastboot reboot).
func (u *unitRun) flash(ctx context.Context) (flash.Job, bool) {
	s, p, lr := u.s, u.s.p, u.s.line
	s.state(StateFlashing, u.id)
	u.setStage("flash")
	job, err := p.o.Hardware.OpenJob(ctx, u.dev, flash.TargetOptions{
		Block:     flash.BlockOptions{USBPorts: s.cfg.USBPorts, AllowNonUSB: p.o.AllowNonUSB},
		Partition: lr.cfg.Fastboot.Partition,
	})
	if err != nil {
		var f *flash.Failure
		if errors.As(err, &f) {
			u.fail(f.Reason, f.Error())
		} else {
			u.fail(flash.ReasonOpen, err.Error())
		}
		return nil, false
	}
	res := job.Run(ctx, lr.image, flash.Options{Verify: true, InFlight: p.o.InFlight, ProgressEvery: 250 * time.Millisecond,
		Progress: func(pr flash.Progress) {
			prog := Progress{Phase: pr.Phase, Done: pr.Done, Total: pr.Total, Rate: pr.Rate, ETA: pr.ETA}
			s.update(func(v *SlotView) { v.Progress = prog; v.Stage = pr.Phase })
			u.event(Event{Kind: EventProgress, Progress: prog, Stage: pr.Phase})
		}})
	_ = p.led.UpdateUnit(ctx, u.id, ledger.UnitProgress{MappedBytes: res.MappedBytes, WrittenBytes: res.WrittenBytes,
		FlashTime: res.WriteTime, VerifyTime: res.VerifyTime})
	flashDoc := map[string]any{"target": res.Target, "mapped_bytes": res.MappedBytes, "written_bytes": res.WrittenBytes,
		"seconds": res.WriteTime.Seconds(), "mb_per_s": res.MBPerSec(), "verified": res.Verified,
		"verify_seconds": res.VerifyTime.Seconds(), "note": res.VerifyNote, "image_sha256": lr.image.SourceSHA256}
	if res.Failure != nil {
		flashDoc["error"], flashDoc["reason"] = res.Failure.Error(), res.Failure.Reason
	}
	u.record("flash", "flash", "flash result", flashDoc)
	u.event(Event{Kind: EventFlash, Flash: &FlashFigures{Target: res.Target, Mapped: res.MappedBytes, Written: res.WrittenBytes,
		Write: res.WriteTime, Verify: res.VerifyTime, Verified: res.Verified, Note: res.VerifyNote}})
	if res.Failure != nil {
		job.Close()
		u.fail(res.Failure.Reason, res.Failure.Error())
		return nil, false
	}
	return job, true
}

// trigger starts the board's first boot as the line says, and closes the
// flash job.
func (u *unitRun) trigger(ctx context.Context, job flash.Job) bool {
	defer job.Close()
	s, lr := u.s, u.s.line
	s.state(StateBooting, u.id)
	u.setStage("trigger")
	if !u.openWindow() {
		return false
	}
	switch lr.cfg.Boot.Trigger {
	case TriggerFastbootReboot:
		r, ok := job.(flash.Rebooter)
		if !ok {
			u.fail(ReasonTriggerFailed, "the slot's board was not flashed over fastboot: it cannot be rebooted that way")
			return false
		}
		if err := r.Reboot(ctx); err != nil {
			u.fail(ReasonTriggerFailed, "fastboot reboot: "+err.Error())
			return false
		}
	case TriggerHubPower:
		if s.cfg.Power == nil {
			u.fail(ReasonTriggerFailed, "the slot has no hub power port")
			return false
		}
		if !u.powerCycle(ctx) {
			return false
		}
	case TriggerConsole:
		err := u.con.Send("\x03")
		if err == nil {
			time.Sleep(100 * time.Millisecond)
			err = u.con.Send(lr.cfg.Boot.ConsoleCommand + "\r")
		}
		if err != nil {
			u.fail(ReasonTriggerFailed, "console command: "+err.Error())
			return false
		}
	case TriggerManual:
		u.event(Event{Kind: EventNotice, Text: "power-cycle the board in slot " + s.cfg.ID + " now"})
	}
	u.record("state", "trigger", "boot triggered by "+lr.cfg.Boot.Trigger, nil)
	return true
}

// openWindow opens the unit's registration window on a proxy line, just
// before its boot is triggered: from now on the line's proxy forwards the
// board's serial request (and only one identity) for this unit.
func (u *unitRun) openWindow() bool {
	s, lr := u.s, u.s.line
	if lr.windows == nil {
		return true
	}
	spec := serialvault.WindowSpec{Unit: u.id, Slot: s.cfg.ID, HWSerial: u.dev.Serial}
	if lr.windows.Predicted() {
		exp, err := ExpandSerial(lr.cfg.Registration.ExpectedSerial, map[string]string{
			"hw": u.dev.Serial, "slot": s.cfg.ID, "line": lr.cfg.ID, "station": s.p.st.ID})
		if err != nil {
			u.fail(ReasonNoExpectedSerial, err.Error()+"; the board was not booted")
			return false
		}
		spec.Expected = exp
	}
	w, err := lr.windows.Open(spec)
	if err != nil {
		var ce *serialvault.ConflictError
		if errors.As(err, &ce) {
			u.event(Event{Kind: EventNotice, HWSerial: u.dev.Serial, Text: fmt.Sprintf("slots %s and %s: two boards expect serial %s; %s was not booted",
				ce.Other.Slot, s.cfg.ID, ce.Serial, s.cfg.ID)})
			u.fail(ReasonSerialConflict, err.Error()+"; this board was not booted")
			return false
		}
		u.fail(ReasonNoExpectedSerial, err.Error())
		return false
	}
	u.window = w
	msg := "registration window opened for serial " + spec.Expected
	if spec.Expected == "" {
		msg = "registration window opened (the line cannot predict serials: the proxy binds while this is its one open window)"
	}
	u.record("registration", "trigger", msg, map[string]any{"window": w.ID, "expected_serial": spec.Expected})
	return true
}

// boot watches the first boot on the console.
func (u *unitRun) boot(ctx context.Context) (console.Verdict, bool) {
	s := u.s
	start := time.Now()
	if !u.bootFrom.IsZero() {
		start = u.bootFrom // the console may have spoken since
	}
	// On UC20+ lines the board's kernel names the recovery system it
	// boots: it must be the seed the gate read from the image.
	label := s.line.seedLabel()
	m := console.NewMachine(s.line.profile, start)
	m.ExpectSeedLabel(label)
	v := u.con.WatchMachine(ctx, m, func(e console.Event) {
		switch e.Kind {
		case console.EventSeedLabel:
			u.record("boot", "seed-label", e.Detail, map[string]string{"seen": e.Detail, "expected": label})
		case console.EventNote:
			u.record("boot", "note", e.Detail, nil)
		case console.EventStage:
			u.setStage(e.Stage)
			u.event(Event{Kind: EventStage, Stage: e.Stage, Skipped: e.Skipped})
			u.record("stage", e.Stage, map[bool]string{true: "skipped", false: "reached"}[e.Skipped], map[string]float64{"at_seconds": e.At.Seconds()})
		case console.EventLine:
			s.update(func(v *SlotView) { v.LastLine = e.Line })
			u.event(Event{Kind: EventLine, Text: e.Line})
		case console.EventGap:
			u.record("console", "", e.Detail, nil)
		}
	})
	_ = s.p.led.UpdateUnit(ctx, u.id, ledger.UnitProgress{BootTime: time.Since(start)})
	if !v.Passed {
		detail := v.Detail
		if len(v.LastLines) > 0 {
			detail += "\nlast console lines:\n" + strings.Join(v.LastLines, "\n")
		}
		reason := v.Reason
		if reason == "cancelled" {
			reason = ReasonInterrupted
		}
		u.fail(reason, detail)
		return v, false
	}
	return v, true
}

// register waits for the serial assertion: through the proxy, or read
// from the console.
func (u *unitRun) register(ctx context.Context, v console.Verdict) bool {
	s, p, lr := u.s, u.s.p, u.s.line
	s.state(StateRegister, u.id)
	u.setStage("register")
	if lr.cfg.Capture.Method == CaptureConsole {
		consoleConf := len(v.LastLines) > 0 && strings.Contains(v.LastLines[len(v.LastLines)-1], "Press enter to configure")
		// The board registers with the vault itself, whatever the station
		// does: a stop (or the batch's end) leaves the capture StopGrace to
		// read the serial the vault signs, so that it is recorded.
		gctx, gcancel := afterStop(ctx, p.hard, p.o.StopGrace)
		defer gcancel()
		cctx, cancel := context.WithTimeout(gctx, p.o.RegisterTimeout)
		defer cancel()
		text, err := console.CaptureSerial(cctx, u.con, console.LoginOptions{User: lr.cfg.Capture.User, Password: lr.password,
			ReadyByConsoleConf: consoleConf, Wait: p.o.RegisterTimeout, Poll: time.Second,
			OnLine: func(l string) {
				if !console.IsMarker(l) {
					s.update(func(v *SlotView) { v.LastLine = l })
				}
			}})
		if err != nil {
			if reason, ok := console.IsCaptureError(err); ok {
				u.fail(reason, err.Error())
			} else {
				u.fail(ReasonRegistrationTimeout, err.Error())
			}
			return false
		}
		return u.recordConsoleSerial(ctx, text)
	}
	c, ok := u.awaitIdentity(ctx)
	if !ok {
		return false
	}
	u.registered(ctx, c.Serial, c.Revision, c.Duplicate, c.DeviceKeyID)
	if lr.cfg.Capture.User != "" {
		return u.proveIdentity(ctx, c, v)
	}
	return true
}

// afterStop is ctx, lasting grace longer once ctx ends, unless hard ends.
func afterStop(ctx, hard context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(gctx, func() { t.Stop() })
	})
	stopHard := context.AfterFunc(hard, cancel)
	return gctx, func() { stop(); stopHard(); cancel() }
}

// awaitIdentity waits for the serial the proxy records through the unit's
// window. Refusals do not end the wait: the board retries, and the last
// refusal is the detail only if the window closes without an identity.
func (u *unitRun) awaitIdentity(ctx context.Context) (*serialvault.Capture, bool) {
	p := u.s.p
	deadline := time.NewTimer(p.o.RegisterTimeout)
	defer deadline.Stop()
	for {
		c, _, changed := u.window.State()
		if c != nil {
			return c, true
		}
		var why string
		select {
		case <-changed:
			continue
		case <-deadline.C:
			if _, r, _ := u.window.State(); r != nil && r.Code == serialvault.CodeStorageUnavailable {
				// The vault signed; the ledger cannot record it yet (the
				// serial is spooled, the board retries): the board is not
				// at fault, so it waits for the ledger while the station runs.
				deadline.Reset(p.o.RegisterTimeout)
				u.event(Event{Kind: EventNotice, Serial: r.Serial, Text: fmt.Sprintf("slot %s: still waiting for the ledger to record serial %s (the vault signed it; it is in the spool); the board is not failed for it",
					u.s.cfg.ID, r.Serial)})
				continue
			}
		case <-ctx.Done():
			why = "stopped"
		}
		c, refusal := u.window.Close()
		switch {
		case c != nil: // recorded as the window closed: the unit has it
			return c, true
		case why != "":
			u.fail(ReasonInterrupted, "stopped while waiting for the board's serial")
		case refusal != nil:
			u.fail(ReasonVaultRefused, refusalDetail(refusal, p.o.RegisterTimeout))
		default:
			u.fail(ReasonRegistrationTimeout, fmt.Sprintf("no serial assertion for %s through the recording proxy within %s", u.dev.Serial, p.o.RegisterTimeout))
		}
		return nil, false
	}
}

func refusalDetail(r *serialvault.Refusal, waited time.Duration) string {
	who := "the vault answered"
	if r.By == serialvault.RefusedByStation {
		who = "the station refused it (the vault would have)"
	}
	return fmt.Sprintf("no serial within %s; the last request (serial %s, device key %.12s...) was refused: %s %d %s: %s",
		waited, r.Serial, r.DeviceKeyID, who, r.Status, r.Code, r.Message)
}

// StageIdentity is the check, on a proxy line with a console login, that
// the board holds the identity the proxy recorded.
const StageIdentity = "identity"

// proveIdentity reads, over the console, the serial assertion the board
// holds and checks it is the one recorded for it: same serial, same device
// key. Anything else means another device registered in its place.
func (u *unitRun) proveIdentity(ctx context.Context, c *serialvault.Capture, v console.Verdict) bool {
	s, p, lr := u.s, u.s.p, u.s.line
	u.setStage(StageIdentity)
	u.event(Event{Kind: EventStage, Stage: StageIdentity})
	wait := min(p.o.ProofWait, p.o.RegisterTimeout)
	consoleConf := len(v.LastLines) > 0 && strings.Contains(v.LastLines[len(v.LastLines)-1], "Press enter to configure")
	cctx, cancel := context.WithTimeout(ctx, wait+time.Minute)
	defer cancel()
	text, err := console.CaptureSerial(cctx, u.con, console.LoginOptions{User: lr.cfg.Capture.User, Password: lr.password,
		ReadyByConsoleConf: consoleConf, Wait: wait, Poll: time.Second,
		OnLine: func(l string) {
			if !console.IsMarker(l) {
				s.update(func(v *SlotView) { v.LastLine = l })
			}
		}})
	recorded := string(c.Assertion.Encode())
	if err != nil {
		reason, ok := console.IsCaptureError(err)
		switch {
		case ctx.Err() != nil:
			u.fail(ReasonInterrupted, err.Error())
		case reason == console.ReasonRegistrationWait || reason == console.ReasonRegistration || reason == console.ReasonNoSerial:
			u.identityMismatch(c, recorded, "", fmt.Sprintf("the board holds no serial assertion after %s (%v), so serial %s (device key %.12s...) recorded for it came from another device",
				wait, err, c.Serial, c.DeviceKeyID))
		case ok:
			u.fail(reason, "cannot check the board's identity on its console: "+err.Error())
		default:
			u.fail(console.ReasonNoShell, "cannot check the board's identity on its console: "+err.Error())
		}
		return false
	}
	a, err := serialvault.Decode(text)
	var held *serialvault.Serial
	if err == nil {
		held, err = serialvault.AsSerial(a)
	}
	switch {
	case err != nil:
		u.identityMismatch(c, recorded, string(text), "the board's serial assertion does not decode: "+err.Error())
		return false
	case held.Serial != c.Serial || held.DeviceKeyID != c.DeviceKeyID:
		u.identityMismatch(c, recorded, string(text), fmt.Sprintf("the board holds serial %s with device key %.12s..., the proxy recorded serial %s with device key %.12s... for it",
			held.Serial, held.DeviceKeyID, c.Serial, c.DeviceKeyID))
		return false
	}
	u.record("identity", StageIdentity, "the board holds the recorded identity", map[string]string{"serial": held.Serial, "device_key": held.DeviceKeyID})
	return true
}

// identityMismatch fails the unit, keeping both texts as evidence: the
// recorded assertion stays linked to the unit, the board's goes with the
// verdict (and into the ledger's serial assertions when it verifies).
func (u *unitRun) identityMismatch(c *serialvault.Capture, recorded, board, detail string) {
	lr := u.s.line
	if board != "" {
		if a, err := serialvault.Decode([]byte(board)); err == nil {
			if sr, err := serialvault.AsSerial(a); err == nil {
				if _, err := lr.keys.Verify(a); err == nil {
					_, _, _ = u.s.p.led.RecordSerialAssertion(context.WithoutCancel(u.ctx), ledger.SerialAssertion{Text: a.Encode(),
						BrandID: sr.BrandID, Model: sr.Model, Serial: sr.Serial, Revision: sr.Revision(), DeviceKeyID: sr.DeviceKeyID,
						LineID: lr.cfg.ID, UnitID: u.id, Via: ledger.ViaConsole, Duplicate: sr.Revision() > 1})
				}
			}
		}
	}
	u.record("identity", StageIdentity, "identity mismatch: "+detail, map[string]string{
		"recorded_assertion": recorded, "board_assertion": board, "recorded_serial": c.Serial, "recorded_device_key": c.DeviceKeyID})
	u.fail(ReasonIdentityMismatch, detail)
}

func (u *unitRun) registered(ctx context.Context, serial string, revision int, dup bool, keyID string) {
	_ = u.s.p.led.UpdateUnit(context.WithoutCancel(ctx), u.id, ledger.UnitProgress{Serial: serial, Stage: "registered"})
	u.s.update(func(v *SlotView) { v.Serial, v.Duplicate, v.Stage = serial, dup, "registered" })
	msg := fmt.Sprintf("serial %s revision %d device key %s", serial, revision, keyID)
	if dup {
		msg += " (duplicate: the vault had signed this serial or device key before)"
		u.event(Event{Kind: EventNotice, Serial: serial, Text: "duplicate serial " + serial + fmt.Sprintf(" (revision %d)", revision)})
	}
	u.record("registered", "registered", msg, map[string]any{"serial": serial, "revision": revision, "duplicate": dup, "device_key": keyID})
}

// recordConsoleSerial verifies a serial read over the console and records
// it durably.
func (u *unitRun) recordConsoleSerial(ctx context.Context, text []byte) bool {
	lr := u.s.line
	a, err := serialvault.Decode(text)
	if err != nil {
		u.fail(ReasonAssertionInvalid, err.Error())
		return false
	}
	sr, err := serialvault.AsSerial(a)
	if err == nil {
		_, err = lr.keys.Verify(a)
	}
	if err == nil && (sr.BrandID != lr.model.BrandID || sr.Model != lr.model.Model) {
		err = fmt.Errorf("serial is for %s/%s, the line makes %s/%s", sr.BrandID, sr.Model, lr.model.BrandID, lr.model.Model)
	}
	if err != nil {
		u.fail(ReasonAssertionInvalid, err.Error())
		return false
	}
	rec := ledger.SerialAssertion{Text: a.Encode(), BrandID: sr.BrandID, Model: sr.Model,
		Serial: sr.Serial, Revision: sr.Revision(), DeviceKeyID: sr.DeviceKeyID, LineID: lr.cfg.ID, UnitID: u.id,
		Via: ledger.ViaConsole, Duplicate: sr.Revision() > 1, ReceivedAt: time.Now()}
	if err := u.keepSerial(ctx, rec); err != nil {
		u.fail(ReasonStorage, err.Error())
		return false
	}
	u.registered(ctx, sr.Serial, sr.Revision(), sr.Revision() > 1, sr.DeviceKeyID)
	return true
}

// keepSerial spools a serial the station read and records it into the
// ledger, waiting and retrying while the ledger cannot take it (a full
// disk, a locked file): the board does not fail for the station's
// storage. Stopped meanwhile, the serial stays spooled, and the next start
// records it.
func (u *unitRun) keepSerial(ctx context.Context, rec ledger.SerialAssertion) error {
	p := u.s.p
	key, spoolErr := p.spool.Put(spool.Entry{Assertion: rec})
	if spoolErr != nil {
		p.log.Error().Err(spoolErr).Str("slot", u.s.cfg.ID).Msg("cannot spool the serial read over the console")
		// Nothing else holds it: one try, and the board fails if it fails.
		if _, _, err := p.led.RecordSerialAssertion(context.WithoutCancel(ctx), rec); err != nil {
			return fmt.Errorf("the serial %s can be neither spooled (%v) nor recorded: %w", rec.Serial, spoolErr, err)
		}
		return nil
	}
	err := u.keepWriting(p.stopCtx, "serial "+rec.Serial+" (it is kept in the spool)", func(wctx context.Context) error {
		_, _, err := p.led.RecordSerialAssertion(wctx, rec)
		return err
	})
	if err != nil {
		return fmt.Errorf("stopped before the ledger could record serial %s; it is kept in the spool (%s) and recorded at the next start: %w", rec.Serial, p.spool.Dir(), err)
	}
	_ = p.spool.Done(key)
	return nil
}
