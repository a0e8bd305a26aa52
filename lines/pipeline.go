package lines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/ledger/spool"
	"github.com/flashstation/flashstation/secret"
	"github.com/flashstation/flashstation/seed"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/usb"
)

// Hardware is the bench as the pipeline uses it: what shows on the USB
// ports, the flash target of a device, and hub port power. RealHardware
// is the machine's; the simulated bench is another.
type Hardware interface {
	Devices() ([]usb.Device, error)
	OpenJob(ctx context.Context, dev usb.Device, o flash.TargetOptions) (flash.Job, error)
	usb.PortPower
}

// USB is what the station needs of libusb: fastboot interfaces and hub
// port power (the usb/libusb adapter's Session is one).
type USB interface {
	flash.FastbootOpener
	usb.PortPower
	Close() error
}

// RealHardware finds boards in sysfs, opens their disks, and opens
// fastboot interfaces and switches hub ports through USB. It owns USB:
// Close closes it, once the station has ended.
type RealHardware struct {
	Sysfs usb.Sysfs
	// USB opens fastboot interfaces and switches hub ports; nil: neither
	// is available.
	USB USB
}

// Devices lists the USB devices.
func (h *RealHardware) Devices() ([]usb.Device, error) { return h.Sysfs.Devices() }

// OpenJob opens a device's disk (UMS) or fastboot interface.
func (h *RealHardware) OpenJob(ctx context.Context, dev usb.Device, o flash.TargetOptions) (flash.Job, error) {
	if h.USB != nil {
		o.USB = h.USB
	}
	switch {
	case dev.Fastboot:
		return flash.OpenJob(ctx, "fastboot:usb:"+dev.PortPath, o)
	case len(dev.Disks) > 0:
		return flash.OpenJob(ctx, dev.Disks[0], o)
	}
	return nil, &flash.Failure{Reason: flash.ReasonOpen, Offset: -1, Detail: "the device on " + dev.PortPath + " has no disk and no fastboot interface"}
}

// errNoUSB is SetPortPower's error without USB access.
var errNoUSB = errors.New("hub power not available (no USB access given)")

// SetPortPower switches a hub port as uhubctl does: through the kernel's
// port disable attribute where it has one (Linux 6.0 and later; the hub
// driver then keeps the port off), else (an older kernel, or the
// attribute not writable) by the hub class request through USB.
func (h *RealHardware) SetPortPower(ctx context.Context, hub string, port int, on bool) error {
	serr := h.Sysfs.SetPortPower(ctx, hub, port, on)
	if serr == nil || ctx.Err() != nil {
		return serr
	}
	if h.USB == nil {
		if errors.Is(serr, usb.ErrNoPortDisable) {
			return fmt.Errorf("hub %s port %d: %w", hub, port, errNoUSB)
		}
		return fmt.Errorf("%w; and %w", serr, errNoUSB)
	}
	err := h.USB.SetPortPower(ctx, hub, port, on)
	if err != nil && !errors.Is(serr, usb.ErrNoPortDisable) {
		return fmt.Errorf("%w (sysfs first: %v)", err, serr)
	}
	return err
}

// USBAvailable says whether the station can reach USB devices (libusb
// started): nil when it can.
func (h *RealHardware) USBAvailable() error {
	if h.USB == nil {
		return errNoUSB
	}
	if a, ok := h.USB.(interface{ Available() error }); ok {
		return a.Available()
	}
	return nil
}

// HubDescriptor reads a hub's descriptor through USB (its power
// switching and ports).
func (h *RealHardware) HubDescriptor(ctx context.Context, hub string) (usb.HubDescriptor, error) {
	r, ok := h.USB.(usb.HubReader)
	if !ok {
		return usb.HubDescriptor{}, fmt.Errorf("hub %s: %w", hub, errNoUSB)
	}
	return r.HubDescriptor(ctx, hub)
}

// PortPeer finds a hub port's twin on the other half of a USB 3 hub
// (sysfs), so that a power cycle switches both.
func (h *RealHardware) PortPeer(hub string, port int) (string, int, bool) {
	return h.Sysfs.PortPeer(hub, port)
}

// Close closes the USB access (the libusb context), when there is one.
func (h *RealHardware) Close() error {
	if h.USB == nil {
		return nil
	}
	return h.USB.Close()
}

// Options configure a pipeline.
type Options struct {
	Hardware Hardware
	Ledger   *ledger.Ledger
	Logger   zerolog.Logger
	Operator string
	// BatchSize is the planned boards per line; the pipeline is Done when
	// every line's batch closed (0: batches run until stopped).
	BatchSize int
	// PollEvery is the USB presence poll (default 200 ms); RegisterTimeout
	// the wait for a serial assertion after the console is ready (default
	// 10 min); ProofWait the wait for the board to show, on its console,
	// the identity the proxy recorded (default 2 min); InFlight the I/Os
	// in flight per target (default 2).
	PollEvery       time.Duration
	RegisterTimeout time.Duration
	ProofWait       time.Duration
	InFlight        int
	// HealthEvery is how often each line's vault is asked for its version
	// (default 15 s).
	HealthEvery time.Duration
	// StopGrace is how long a stop waits for the boards of console-capture
	// lines that are registering (they register with the vault whatever
	// the station does) to have their serials read (default 1 min).
	StopGrace time.Duration
	// ReconcileEvery is how often a line with a vault signing-log is
	// reconciled with it (default 5 min).
	ReconcileEvery time.Duration
	// AllowNonUSB lets slots flash disks that are not on USB (labs).
	AllowNonUSB bool
	// PowerOffWait bounds the wait, in a hub-power boot trigger, for the
	// board to leave the bus once its port is off (default 5 s: a real
	// hub drops it within a second); PowerOnWait the wait, once the port
	// is on again, for it to show again or speak on its console (default
	// 15 s).
	PowerOffWait time.Duration
	PowerOnWait  time.Duration
}

// Pipeline runs a station's slots: each takes a board from insertion to a
// recorded serial assertion on its own, and every step goes to one event
// stream that the ledger and the interfaces consume.
type Pipeline struct {
	st    *Station
	o     Options
	log   zerolog.Logger
	led   *ledger.Ledger
	hub   hub
	lines map[string]*lineRun
	slots []*slotRun
	cache *flash.Cache
	// spool holds every serial assertion learned until the ledger has it;
	// replayed holds what the last run left there, replayed at start.
	spool    *spool.Spool
	replayed []spool.Entry

	done     chan struct{}
	doneOnce sync.Once
	proxies  []*proxyRun
	// hard ends (StopNow) a stop's grace.
	hard     context.Context
	hardStop context.CancelFunc
	// stopCtx ends when the station stops (Run's context): writes a unit
	// waits on give up then.
	stopCtx context.Context
	// fwd forwards the ledger to the factory ledger (nil: none).
	fwd *ledger.Forwarder
	// storageSaid holds the serials the operator was told the ledger
	// cannot record (once each).
	storageSaid sync.Map
	// op is who is at the bench (Options.Operator, or SetOperator).
	op operatorAtBench
}

type lineRun struct {
	cfg   *Line
	model *serialvault.Model
	keys  *serialvault.KeyRing
	image *flash.Prepared
	// gate is the image identity gate's verdict on image; a refused image
	// holds the line: no batch, no board touched.
	gate     *seed.Verdict
	profile  *console.Profile
	password secret.Value
	// windows are the registration windows of a proxy line's units.
	windows *serialvault.Windows

	mu        sync.Mutex
	batch     ledger.Batch
	run       *batchRun
	health    vaultHealth
	reconcile *Reconciliation // the last pass (nil: none yet)
}

// probeEvery is how many health rounds pass between two api-key probes.
const probeEvery = 10

// lineOf is a line's run, for the watchers.
func lineOf(p *Pipeline, id string) *lineRun { return p.lines[id] }

type vaultHealth struct {
	ok         bool
	keyRefused bool // the vault answers and refuses the line's api-key
	dbDown     bool // the vault answers, but not its database
	err        string
	checked    time.Time
	latency    time.Duration // the last health request's
}

type proxyRun struct {
	proxy *serialvault.Proxy
	ln    net.Listener
	line  string
	// stopped is why the proxy stopped serving while the station ran
	// (nil: it serves).
	stopped atomic.Pointer[string]
}

// NewPipeline prepares everything a batch needs before any board is
// touched: each line's model, keys, boot profile and image (decompressed,
// mapped and checked once), its recording proxy, and its batch (an open
// one is resumed). Units a killed station left running are marked
// interrupted.
func NewPipeline(ctx context.Context, st *Station, o Options) (*Pipeline, error) {
	if o.Hardware == nil || o.Ledger == nil {
		return nil, errors.New("pipeline: hardware and ledger are required")
	}
	if o.PollEvery == 0 {
		o.PollEvery = 200 * time.Millisecond
	}
	if o.RegisterTimeout == 0 {
		o.RegisterTimeout = 10 * time.Minute
	}
	if o.ProofWait == 0 {
		o.ProofWait = 2 * time.Minute
	}
	if o.InFlight == 0 {
		o.InFlight = 2
	}
	if o.StopGrace == 0 {
		o.StopGrace = time.Minute
	}
	if o.ReconcileEvery == 0 {
		o.ReconcileEvery = 5 * time.Minute
	}
	if o.HealthEvery == 0 {
		o.HealthEvery = 15 * time.Second
	}
	if o.PowerOffWait == 0 {
		o.PowerOffWait = defaultPowerOffWait
	}
	if o.PowerOnWait == 0 {
		o.PowerOnWait = defaultPowerOnWait
	}
	// The hardware's checks come before anything is prepared or recorded.
	if err := checkHardware(ctx, st, o.Hardware); err != nil {
		return nil, err
	}
	p := &Pipeline{st: st, o: o, log: o.Logger, led: o.Ledger, lines: map[string]*lineRun{}, done: make(chan struct{})}
	p.op.name = o.Operator
	p.hard, p.hardStop = context.WithCancel(context.Background())
	var err error
	if p.cache, err = flash.NewCache(filepath.Join(st.DataDir, "images")); err != nil {
		return nil, err
	}
	if p.spool, err = spool.Open(SpoolDir(st)); err != nil {
		return nil, err
	}
	// Serials a stopped or killed station (or a failing ledger) left in
	// the spool go into the ledger before anything else.
	p.replayed, err = p.spool.Replay(ctx, p.led)
	if len(p.replayed) > 0 {
		p.log.Warn().Int("serials", len(p.replayed)).Msg("serial assertions replayed from the spool into the ledger")
	}
	if err != nil {
		return nil, fmt.Errorf("the spool of signed serials cannot go into the ledger (nothing is lost: it stays in %s): %w", p.spool.Dir(), err)
	}
	if ids, err := p.led.InterruptRunning(ctx, st.ID, ReasonInterrupted, "the station stopped while the board was in work; its evidence is kept"); err != nil {
		return nil, err
	} else if len(ids) > 0 {
		p.log.Warn().Ints64("units", ids).Msg("units left running by a stopped station marked interrupted")
	}
	if p.fwd, err = factoryForwarder(ctx, st, p.led); err != nil {
		return nil, err
	}
	open, err := p.led.OpenBatches(ctx, st.ID)
	if err != nil {
		return nil, err
	}
	held := 0
	reads := map[string]*seed.Image{} // the lines' images, read once each
	for i := range st.Lines {
		l := &st.Lines[i]
		lr := &lineRun{cfg: l}
		if lr.model, err = l.LoadModel(); err != nil {
			return nil, err
		}
		if lr.keys, err = l.LoadKeyRing(); err != nil {
			return nil, err
		}
		if lr.profile, err = console.LoadProfile(l.Boot.Profile); err != nil {
			return nil, fmt.Errorf("line %s: %w", l.ID, err)
		}
		if l.Capture.User != "" {
			if lr.password, err = l.Capture.Password.Resolve(); err != nil {
				return nil, fmt.Errorf("line %s: console password (%s): %w", l.ID, l.Capture.Password, err)
			}
		}
		p.log.Info().Str("line", l.ID).Str("image", l.Image.File).Msg("preparing image")
		if lr.image, err = p.cache.Prepare(ctx, ImageSpecOf(l), nil); err != nil {
			return nil, fmt.Errorf("line %s: %w", l.ID, err)
		}
		lr.run = newBatchRun(context.Background())
		if err := p.gateImage(ctx, lr, reads); err != nil {
			return nil, err
		}
		if !lr.gate.Pass {
			// Held: its slots take no board. An open batch a killed
			// station left is kept for the right image.
			held++
			lr.run.closed = closedImageRefused
			p.lines[l.ID] = lr
			continue
		}
		for _, b := range open {
			if b.LineID == l.ID {
				lr.batch = b
			}
		}
		if lr.batch.ID != 0 && !sameImage(lr.batch, lr) {
			// A batch is of one image: the killed station's batch was of
			// another (or of one the gate never saw), so it is closed
			// with what it holds, and this image starts its own.
			p.log.Warn().Str("line", l.ID).Int64("batch", lr.batch.ID).Str("batch_model_digest", lr.batch.ModelDigest).
				Str("batch_seed_label", lr.batch.SeedLabel).Str("model_digest", lr.gate.Identity.ModelDigest).
				Str("seed_label", lr.gate.Identity.SeedLabel).Msg("the open batch is of another image: closed, a new batch starts")
			if err := p.led.CloseBatch(ctx, lr.batch.ID, ledger.BatchStopped); err != nil {
				return nil, err
			}
			lr.batch = ledger.Batch{}
		}
		if lr.batch.ID != 0 {
			done, err := p.led.Units(ctx, ledger.UnitFilter{BatchID: lr.batch.ID})
			if err != nil {
				return nil, err
			}
			lr.run.resume(done)
			if lr.batch.Planned > 0 && len(lr.run.done) >= lr.batch.Planned {
				// Complete when the station was killed: closed now, and a new batch.
				if err := p.led.CloseBatch(ctx, lr.batch.ID, ledger.BatchComplete); err != nil {
					return nil, err
				}
				lr.batch, lr.run = ledger.Batch{}, newBatchRun(context.Background())
			} else {
				p.log.Info().Str("line", l.ID).Int64("batch", lr.batch.ID).Int("done", len(lr.run.done)).Msg("resuming open batch")
			}
		}
		if lr.batch.ID == 0 {
			id, err := p.led.StartBatch(ctx, ledger.Batch{LineID: l.ID, Operator: o.Operator, Planned: o.BatchSize, ImageSHA256: lr.image.SourceSHA256,
				ModelDigest: lr.gate.Identity.ModelDigest, SeedLabel: lr.gate.Identity.SeedLabel, ModelSignKey: lr.gate.Identity.SignKey})
			if err != nil {
				return nil, err
			}
			if lr.batch, err = p.led.Batch(ctx, id); err != nil {
				return nil, err
			}
		}
		p.lines[l.ID] = lr
	}
	if held == len(st.Lines) && held > 0 {
		return nil, refusedError(p)
	}
	for i := range st.Slots {
		s := &st.Slots[i]
		p.slots = append(p.slots, newSlotRun(p, s))
	}
	if err := p.findUnread(ctx); err != nil {
		return nil, err
	}

	for id, lr := range p.lines {
		if lr.cfg.Capture.Method != CaptureProxy {
			continue
		}
		if err := p.startProxy(id, lr); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// checkHardware refuses a station its hardware cannot serve: USB
// fastboot slots without USB access, hub-power slots on hubs that cannot
// switch one port alone.
func checkHardware(ctx context.Context, st *Station, hw Hardware) error {
	// A slot that flashes over USB fastboot needs USB access: refused at
	// the start, not as a failed board.
	if a, ok := hw.(interface{ USBAvailable() error }); ok {
		for _, s := range st.Slots {
			if s.Method == MethodFastboot && !s.Disabled {
				if err := a.USBAvailable(); err != nil {
					return fmt.Errorf("slot %s flashes over USB fastboot, and this station has no USB access: %w", s.ID, err)
				}
			}
		}
	}
	// A hub-power trigger needs hubs that switch each port alone: refused
	// before any board is touched (hardware that can read hub descriptors).
	if r, ok := hw.(usb.HubReader); ok {
		peers, _ := hw.(usb.PeerFinder)
		if errs := CheckHubPower(ctx, st, r, peers); len(errs) > 0 {
			return fmt.Errorf("the bench's hubs cannot power-cycle its boards: %w", errors.Join(errs...))
		}
	}
	return nil
}

// SpoolDir is where a station spools the serial assertions it learns.
func SpoolDir(st *Station) string { return filepath.Join(st.DataDir, "spool") }

// ImageSpecOf is what a line's image is, for the cache.
func ImageSpecOf(l *Line) flash.ImageSpec {
	return flash.ImageSpec{Path: l.Image.File, Bmap: l.Image.Bmap, SHA256: l.Image.SHA256}
}

func (p *Pipeline) startProxy(id string, lr *lineRun) error {
	lr.windows = serialvault.NewWindows(lr.cfg.PredictsSerials())
	proxy, err := NewLineProxy(lr.cfg, p.led, p.spool, lr.windows, p.log, p.onCapture, p.onRefusal)
	if err != nil {
		return err
	}
	if n := proxy.Preload(p.replayed); n > 0 {
		p.log.Info().Str("line", id).Int("answers", n).Msg("answers of the last run kept for the boards' retries")
	}
	ln, err := net.Listen("tcp", lr.cfg.Proxy.Listen)
	if err != nil {
		return fmt.Errorf("line %s: recording proxy: %w", id, err)
	}
	pr := &proxyRun{proxy: proxy, ln: ln, line: id}
	p.proxies = append(p.proxies, pr)
	return nil
}

// Subscribe returns every event from now on (buffered; progress and
// console lines are dropped for a subscriber that falls behind).
func (p *Pipeline) Subscribe(buffer int) <-chan Event { return p.hub.Subscribe(buffer) }

func (p *Pipeline) emit(e Event) { p.hub.publish(e) }

// Done is closed when every line's batch closed (its planned boards done,
// or ended by the operator).
func (p *Pipeline) Done() <-chan struct{} { return p.done }

// Batches returns each line's batch.
func (p *Pipeline) Batches() map[string]ledger.Batch {
	out := map[string]ledger.Batch{}
	for id, lr := range p.lines {
		lr.mu.Lock()
		if lr.batch.ID != 0 {
			out[id] = lr.batch
		}
		lr.mu.Unlock()
	}
	return out
}

// Run runs the proxies, the presence poll and every slot until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.stopCtx = ctx
	if p.fwd != nil {
		// The forwarder outlives the slots: what their stop records is
		// sent too (its final sending, once stopped).
		fctx, fcancel := context.WithCancel(context.WithoutCancel(ctx))
		fdone, wdone := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(fdone)
			_ = p.fwd.Run(fctx)
		}()
		go func() {
			defer close(wdone)
			p.watchFactory(fctx)
		}()
		defer func() {
			fcancel()
			<-fdone
			<-wdone
		}()
	}
	var wg sync.WaitGroup
	for _, pr := range p.proxies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pr.proxy.Serve(ctx, pr.ln); err != nil && ctx.Err() == nil {
				p.log.Error().Err(err).Str("line", pr.line).Msg("recording proxy stopped")
				why := err.Error()
				pr.stopped.Store(&why)
				p.emit(Event{Kind: EventNotice, Line: pr.line, Text: fmt.Sprintf("line %s: its recording proxy stopped (%v): its boards cannot register", pr.line, err)})
			}
		}()
	}
	for _, s := range p.slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx)
		}()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		p.poll(ctx)
	}()
	logs := p.signingLogs()
	go func() {
		defer wg.Done()
		p.reconcileLoop(ctx, logs)
	}()
	go func() {
		defer wg.Done()
		p.watchVaults(ctx)
	}()
	<-ctx.Done()
	if slots := p.Registering(); len(slots) > 0 {
		p.emit(Event{Kind: EventNotice, Text: StopGraceNotice(slots, p.o.StopGrace)})
	}
	wg.Wait()
	// Every slot has stopped and its unit ended: a clean stop. A last
	// comparison with the vaults, now that no board is in work (a serial
	// signed for a unit in work is only pending), is kept for status.
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	p.reconcilePass(lctx, logs)
	lcancel()
	p.stopBatches()
	return nil
}

// Registering returns the slots of console-capture lines whose boards are
// registering: a stop waits up to StopGrace for their serials.
func (p *Pipeline) Registering() []string {
	var out []string
	for _, s := range p.slots {
		if v := s.view(); s.line.cfg.Capture.Method == CaptureConsole && v.State == StateRegister && v.Stage != StageRecover {
			out = append(out, s.cfg.ID)
		}
	}
	return out
}

// StopGrace is how long a stop waits for registering boards.
func (p *Pipeline) StopGrace() time.Duration { return p.o.StopGrace }

// StopNow ends a stop's grace at once: the boards still registering are
// left (their units end interrupted; the next start reads their serials,
// or the reconciliation names them).
func (p *Pipeline) StopNow() { p.hardStop() }

// StopGraceNotice says what a stop waits for.
func StopGraceNotice(slots []string, grace time.Duration) string {
	return fmt.Sprintf("stopping: the boards in %s are registering with the vault; waiting up to %s to read and record their serials (Ctrl-C stops at once: the next start reads the serials from the boards, or the reconciliation with the vault's signing log names them)",
		strings.Join(slots, ", "), grace)
}

// Close releases the proxies' listeners and ends the event stream.
func (p *Pipeline) Close() {
	p.hardStop()
	for _, pr := range p.proxies {
		pr.ln.Close()
	}
	p.hub.close()
}

// LineHealth is what an interface shows of a line: its batch, its vault
// and its recording proxy.
type LineHealth struct {
	Line     string
	Name     string
	Capture  string
	Batch    ledger.Batch
	Finished int // boards done with the batch (pass, fail or error)
	// Vault is the vault's URL (never with credentials); VaultOK says
	// whether it answered its last check (VaultChecked zero: not yet).
	Vault        string
	VaultOK      bool
	VaultError   string
	VaultChecked time.Time
	// VaultLatency is how long the vault took to answer its last check.
	VaultLatency time.Duration
	// VaultDatabaseDown: the vault answers but cannot reach its database
	// (it refuses every api-key meanwhile; boards are told to retry).
	VaultDatabaseDown bool
	// VaultKeyRefused: the vault answers and refuses the line's api-key
	// (probed with a request-id now and then).
	VaultKeyRefused bool
	// Trays are where the line's boards go once their verdict is in.
	Trays Trays
	// Reconciled is the last comparison of the ledger with the vault's
	// signing log (nil: none, or no signing-log configured).
	Reconciled *Reconciliation
	// Proxy is the recording proxy's address ("" for console capture).
	Proxy      string
	ProxyStats serialvault.ProxyStats
	// ProxyStopped says why the line's recording proxy stopped serving
	// ("": it serves).
	ProxyStopped string
	// Image is the image identity gate's verdict on the line's image
	// (nil: not checked). A refused image holds the line.
	Image *seed.Verdict
}

// Health returns each line's health, in configuration order.
func (p *Pipeline) Health() []LineHealth {
	var out []LineHealth
	for i := range p.st.Lines {
		l := &p.st.Lines[i]
		lr := p.lines[l.ID]
		h := LineHealth{Line: l.ID, Name: l.Name, Capture: l.Capture.Method}
		if h.Name == "" {
			h.Name = l.ID
		}
		if u, err := url.Parse(l.Vault.URL); err == nil {
			h.Vault = u.Redacted()
		}
		lr.mu.Lock()
		h.Batch = lr.batch
		h.Finished = len(lr.run.done)
		h.VaultOK, h.VaultError, h.VaultChecked, h.VaultDatabaseDown = lr.health.ok, lr.health.err, lr.health.checked, lr.health.dbDown
		h.Reconciled, h.VaultKeyRefused = lr.reconcile, lr.health.keyRefused
		h.VaultLatency = lr.health.latency
		h.Trays = lr.cfg.Trays
		h.Image = lr.gate
		lr.mu.Unlock()
		for _, pr := range p.proxies {
			if pr.line == l.ID {
				h.Proxy = pr.ln.Addr().String()
				h.ProxyStats = pr.proxy.Stats()
				if why := pr.stopped.Load(); why != nil {
					h.ProxyStopped = *why
				}
			}
		}
		out = append(out, h)
	}
	return out
}

// watchVaults asks each line's vault for its health every HealthEvery
// (/v1/health, or the version of a vault without it; no api-key needed),
// so the operator sees a vault that is down, or whose database is, before
// boards fail on it.
func (p *Pipeline) watchVaults(ctx context.Context) {
	clients, keyed := map[string]*serialvault.Client{}, map[string]*serialvault.Client{}
	for id, lr := range p.lines {
		c, err := serialvault.NewClient(lr.cfg.Vault.URL, serialvault.ClientOptions{CAFile: lr.cfg.Vault.CAFile, Attempts: 1, Logger: p.log})
		if err != nil {
			lr.mu.Lock()
			lr.health = vaultHealth{err: err.Error(), checked: time.Now()}
			lr.mu.Unlock()
			continue
		}
		clients[id] = c
		if k, err := lr.cfg.VaultClient(1, p.log); err == nil {
			keyed[id] = k
		}
	}
	t := time.NewTicker(p.o.HealthEvery)
	defer t.Stop()
	for round := 0; ; round++ {
		for id, c := range clients {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			asked := time.Now()
			err := c.Health(cctx)
			latency := time.Since(asked)
			// A request-id with the line's api-key, at the start and every
			// probeEvery rounds (each spends a nonce in the vault's
			// database): a key the vault refuses shows before a board needs it.
			keyRefused := false
			if k := keyed[id]; err == nil && k != nil && round%probeEvery == 0 {
				_, perr := k.RequestID(cctx)
				var ve *serialvault.VaultError
				if errors.As(perr, &ve) && ve.Code == "invalid-api-key" {
					keyRefused = true
					err = fmt.Errorf("the vault refuses the line's api-key (%s): check %s", ve.Code, lineOf(p, id).cfg.Vault.APIKey)
				}
			} else if err == nil {
				keyRefused = lineOf(p, id).health.keyRefused // until the next probe
			}
			cancel()
			if ctx.Err() != nil {
				return
			}
			h := vaultHealth{ok: err == nil && !keyRefused, dbDown: errors.Is(err, serialvault.ErrDatabaseDown), keyRefused: keyRefused, checked: time.Now(), latency: latency}
			if err != nil {
				h.err = err.Error()
			} else if keyRefused {
				h.err = lineOf(p, id).health.err
			}
			lr := p.lines[id]
			lr.mu.Lock()
			was := lr.health
			lr.health = h
			lr.mu.Unlock()
			if was.ok != h.ok || was.dbDown != h.dbDown || was.keyRefused != h.keyRefused || was.checked.IsZero() {
				if h.ok {
					p.log.Info().Str("line", id).Msg("vault answers")
				} else {
					p.log.Warn().Str("line", id).Str("error", h.err).Msg("vault unhealthy")
					text := "the vault of line " + id + " does not answer: " + h.err
					if h.keyRefused || h.dbDown {
						text = "the vault of line " + id + ": " + h.err
					}
					p.emit(Event{Kind: EventNotice, Line: id, Text: text})
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// EventReconcile is the ledger event kind of a line's reconciliation with
// its vault's signing log (its stage is the line; its data the result),
// recorded when the result changes.
const EventReconcile = "reconcile"

// lineLog is a line's signing log, for the reconciliation.
type lineLog struct {
	lr     *lineRun
	client *serialvault.Client
	key    secret.Value
}

// signingLogs returns the lines that have a vault signing-log.
func (p *Pipeline) signingLogs() []lineLog {
	var todo []lineLog
	for _, lr := range p.lines {
		sl := lr.cfg.Vault.SigningLog
		if sl == nil {
			continue
		}
		key, err := sl.Key.Resolve()
		if err != nil {
			p.log.Warn().Err(err).Str("line", lr.cfg.ID).Msg("signing log key: no reconciliation")
			continue
		}
		c, err := serialvault.NewClient(lr.cfg.Vault.URL, serialvault.ClientOptions{CAFile: lr.cfg.Vault.CAFile, Attempts: 2, Logger: p.log})
		if err != nil {
			continue
		}
		todo = append(todo, lineLog{lr, c, key})
	}
	return todo
}

// reconcileLoop compares, every ReconcileEvery, each line that has a vault
// signing-log with it, and says when they start (or stop) disagreeing.
func (p *Pipeline) reconcileLoop(ctx context.Context, todo []lineLog) {
	if len(todo) == 0 {
		return
	}
	t := time.NewTicker(p.o.ReconcileEvery)
	defer t.Stop()
	for {
		if !p.reconcilePass(ctx, todo) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reconcilePass reconciles each line once; false when ctx ended.
func (p *Pipeline) reconcilePass(ctx context.Context, todo []lineLog) bool {
	for _, ll := range todo {
		l := ll.lr.cfg
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		r, err := ReconcileLine(cctx, l, p.st.ID, ll.lr.model.BrandID, ll.lr.model.Model, ll.client, ll.key, p.led, time.Time{})
		cancel()
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			p.log.Warn().Err(err).Str("line", l.ID).Msg("not reconciled")
			continue
		}
		ll.lr.mu.Lock()
		was := ll.lr.reconcile
		ll.lr.reconcile = &r
		ll.lr.mu.Unlock()
		changed := was == nil || len(was.Differences) != len(r.Differences)
		if changed || was.Matched != r.Matched || was.Pending != r.Pending {
			p.log.Info().Str("line", l.ID).Int("differences", len(r.Differences)).Int("matched", r.Matched).Msg("ledger and vault signing log reconciled")
			text := fmt.Sprintf("line %s: the ledger and the vault's signing log agree (%d serials)", l.ID, r.Matched)
			if !r.OK() {
				d := r.Differences[0]
				text = fmt.Sprintf("line %s: the ledger and the vault's signing log disagree on %d serials (first: %s %s, %s); run flashstation reconcile", l.ID, len(r.Differences), d.Kind, d.Serial, d.Detail)
			}
			// Kept in the ledger (for status and QA), then said.
			data, _ := json.Marshal(r)
			if err := p.led.AppendEvents(ctx, ledger.Event{Kind: EventReconcile, Stage: l.ID, Message: text, Data: data}); err != nil {
				p.log.Warn().Err(err).Msg("cannot record the reconciliation")
			}
			if changed && (was != nil || !r.OK()) {
				p.emit(Event{Kind: EventNotice, Line: l.ID, Text: text})
			}
		}
	}
	return true
}

// poll reads the USB devices every PollEvery and tells each slot what is
// on its ports.
func (p *Pipeline) poll(ctx context.Context) {
	t := time.NewTicker(p.o.PollEvery)
	defer t.Stop()
	for {
		devs, err := p.o.Hardware.Devices()
		if err != nil {
			p.log.Warn().Err(err).Msg("USB discovery failed")
		}
		for _, s := range p.slots {
			var on *usb.Device
			for i := range devs {
				for _, port := range s.cfg.USBPorts {
					if devs[i].PortPath == port {
						d := devs[i]
						on = &d
					}
				}
			}
			s.setPresence(on)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// onCapture receives a serial the proxy recorded. One signed for a window
// that had closed belongs to no unit: recorded, shown, never bound later.
func (p *Pipeline) onCapture(c serialvault.Capture) {
	if c.Window != 0 {
		return // its unit takes it from its window
	}
	p.emit(Event{Kind: EventNotice, Line: c.LineID, Serial: c.Serial,
		Text: fmt.Sprintf("serial without a unit: %s (device key %.12s...) was signed after its board's registration window closed; recorded, not bound to any unit", c.Serial, c.DeviceKeyID)})
}

// onRefusal tells the operator, once per serial, that the ledger cannot
// record a serial the vault signed through a proxy (the board retries; the
// serial waits in the spool). Other refusals stay on their windows.
func (p *Pipeline) onRefusal(r serialvault.Refusal) {
	if r.Code != serialvault.CodeStorageUnavailable {
		return
	}
	if _, said := p.storageSaid.LoadOrStore(r.Serial+" "+r.DeviceKeyID, true); said {
		return
	}
	where := "line " + r.LineID
	if r.Slot != "" {
		where = "slot " + r.Slot
	}
	p.emit(Event{Kind: EventNotice, Line: r.LineID, Slot: r.Slot, Unit: r.Unit, Serial: r.Serial,
		Text: fmt.Sprintf("%s: the ledger cannot record serial %s (%s); it is kept in the spool, and the board's retry records it", where, r.Serial, r.Message)})
}

// transcriptPaths names a unit's transcript files.
func (p *Pipeline) transcriptPaths(batch, unit int64, slot string) (raw, clean string) {
	dir := filepath.Join(p.st.DataDir, "transcripts", fmt.Sprintf("batch-%d", batch))
	_ = os.MkdirAll(dir, 0o750)
	base := filepath.Join(dir, fmt.Sprintf("unit-%d-%s", unit, slot))
	return base + ".raw", base + ".log"
}
