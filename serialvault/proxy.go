package serialvault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/ledger/record"
	"github.com/flashstation/flashstation/ledger/spool"
)

// Recorder writes serial assertions durably; *ledger.Ledger is one.
type Recorder interface {
	RecordSerialAssertion(ctx context.Context, a record.SerialAssertion) (id int64, created bool, err error)
}

// Capture is a serial assertion the proxy recorded and delivered. It
// belongs to the registration window whose request the vault signed (Unit
// and Slot are that window's); Window 0 is a serial without a unit: signed
// for a window that had closed, recorded, and never bound later.
type Capture struct {
	Window      uint64
	Unit        int64
	Slot        string
	LineID      string
	BrandID     string
	Model       string
	Serial      string
	DeviceKeyID string
	Revision    int
	Duplicate   bool // the vault had signed this serial or device key before
	AssertionID int64
	Assertion   *Assertion
	RemoteAddr  string
	At          time.Time
}

// Refusal is a refused serial request that matched a unit's window.
type Refusal struct {
	// By is who refused: RefusedByVault (its 4xx answer, forwarded) or
	// RefusedByStation (a request the vault would refuse, never sent).
	By          string
	Unit        int64
	Slot        string
	LineID      string
	Serial      string // the serial the board proposed
	DeviceKeyID string
	Status      int
	Code        string // the vault's (or the station's) error_code
	Message     string
}

// CodeStorageUnavailable is the station's error code (503) when the
// ledger cannot record a serial the vault signed: the board retries, and
// the serial waits in the spool meanwhile.
const CodeStorageUnavailable = "storage-unavailable"

// Who refused a request.
const (
	RefusedByVault   = "vault"
	RefusedByStation = "station"
)

// ProxyConfig configures a line's recording proxy.
type ProxyConfig struct {
	LineID string
	// BrandID and Model are the line's; requests for anything else are
	// refused.
	BrandID string
	Model   string
	// Keys are the line's trusted brand keys; a serial signed by another
	// key is refused and not recorded.
	Keys *KeyRing
	// Vault is the line's vault, holding the line's api-key. The proxy
	// sends each request once: the device retries.
	Vault    *Client
	Recorder Recorder
	// Spool, when set, keeps each verified answer on disk (fsynced) before
	// the ledger write, until the ledger holds it: a failing ledger, a stop
	// or a kill never loses a serial the vault signed, and after a restart
	// the board's retry still gets its answer (Preload).
	Spool *spool.Spool
	// Windows are the line's registration windows: a serial request is sent
	// to the vault only when it matches an open one.
	Windows *Windows
	// Allow are the address ranges that may call the proxy (the bench
	// network); empty: loopback only.
	Allow []netip.Prefix
	// OnCapture is called after a serial is recorded; it must not block.
	OnCapture func(Capture)
	// OnRefusal is called when a request that matched a window is refused
	// (by the vault, or by the station where the vault would); it must not
	// block.
	OnRefusal func(Refusal)
	Logger    zerolog.Logger
	// MaxBody bounds request bodies (default MaxRequestBody); Timeout
	// bounds a vault call (default 30 s); MaxConcurrent bounds the
	// requests served at once (default 64; more get 503).
	MaxBody       int64
	Timeout       time.Duration
	MaxConcurrent int
	// NonceTTL is how long a request-id the vault issued through the proxy
	// stays usable (default 600 s, the vault's).
	NonceTTL time.Duration
	Now      func() time.Time
}

// ProxyStats counts what the proxy did.
type ProxyStats struct {
	RequestIDs  int64 // request-id calls forwarded
	Recorded    int64 // serials recorded and delivered
	Replayed    int64 // answers served again from the cache
	Refused     int64 // malformed requests the proxy refused itself (400)
	VaultErrors int64 // vault 4xx answers forwarded
	Unavailable int64 // 503s: vault unreachable or storage failing
	Rejected    int64 // vault answers refused (forged or mismatched)
	Forbidden   int64 // callers outside proxy.allow (403)
	NoWindow    int64 // serials no open window expects (403)
	Taken       int64 // second identities for a unit (409)
	Busy        int64 // 503s: several windows could match, or too many requests
	BadNonce    int64 // request-ids the vault did not issue through the proxy (400)
	Unbound     int64 // serials recorded without a unit (their window had closed)
}

// Proxy is a line's recording proxy: it forwards request-id and serial to
// the line's vault with the line's api-key, checks both directions, and
// writes every serial to the ledger before the device sees it.
type Proxy struct {
	cfg   ProxyConfig
	stats struct {
		requestIDs, recorded, replayed, refused, vaultErrors, unavailable, rejected,
		forbidden, noWindow, taken, busy, badNonce, unbound atomic.Int64
	}
	slots chan struct{} // one per request being served

	mu       sync.Mutex
	cache    map[[32]byte]*cachedAnswer // by serial request body
	inflight map[[32]byte]chan struct{} // bodies being served, closed when done
	nonces   map[string]nonce           // request-ids the vault issued through the proxy
}

// nonce is a request-id the vault issued through the proxy.
type nonce struct {
	expires time.Time
	spent   bool
}

const maxNonces = 10000

// cachedAnswer is a verified vault answer for one serial request, kept so
// that the device's retry of the same request (same, already spent nonce)
// gets it: after a storage failure (recorded false) or a lost answer. A
// recorded answer is kept for cacheTTL; one not recorded yet, until it is.
type cachedAnswer struct {
	serial   *Serial
	raw      []byte
	record   record.SerialAssertion
	window   *Window // the window whose request the vault signed
	spooled  string  // its spool key ("": not spooled)
	recorded bool
	expires  time.Time
}

const (
	cacheTTL     = 30 * time.Minute
	cacheMaxSize = 10000
)

// NewProxy checks the configuration and returns a proxy.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	switch {
	case cfg.LineID == "" || cfg.BrandID == "" || cfg.Model == "":
		return nil, errors.New("proxy: line, brand and model are required")
	case cfg.Keys == nil || cfg.Keys.Len() == 0:
		return nil, errors.New("proxy: the line has no trusted brand key")
	case cfg.Vault == nil:
		return nil, errors.New("proxy: no vault client")
	case cfg.Recorder == nil:
		return nil, errors.New("proxy: no recorder")
	case cfg.Windows == nil:
		return nil, errors.New("proxy: no registration windows")
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = MaxRequestBody
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = 64
	}
	if cfg.NonceTTL == 0 {
		cfg.NonceTTL = 600 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Proxy{cfg: cfg, slots: make(chan struct{}, cfg.MaxConcurrent), cache: map[[32]byte]*cachedAnswer{},
		inflight: map[[32]byte]chan struct{}{}, nonces: map[string]nonce{}}, nil
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() ProxyStats {
	return ProxyStats{
		RequestIDs: p.stats.requestIDs.Load(), Recorded: p.stats.recorded.Load(), Replayed: p.stats.replayed.Load(),
		Refused: p.stats.refused.Load(), VaultErrors: p.stats.vaultErrors.Load(),
		Unavailable: p.stats.unavailable.Load(), Rejected: p.stats.rejected.Load(),
		Forbidden: p.stats.forbidden.Load(), NoWindow: p.stats.noWindow.Load(), Taken: p.stats.taken.Load(),
		Busy: p.stats.busy.Load(), BadNonce: p.stats.badNonce.Load(), Unbound: p.stats.unbound.Load(),
	}
}

// allowed reports whether a caller's address is in proxy.allow (loopback
// when allow is empty).
func (p *Proxy) allowed(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	if len(p.cfg.Allow) == 0 {
		return ip.IsLoopback()
	}
	for _, pr := range p.cfg.Allow {
		if pr.Contains(ip) {
			return true
		}
	}
	return false
}

// Serve runs the proxy on l until ctx ends.
func (p *Proxy) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       20 * time.Second, // headers and a body of MaxBody
		WriteTimeout:      2*p.cfg.Timeout + 30*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}
}

// proxyError is the envelope of the proxy's own answers, the vault's shape.
func (p *Proxy) answerError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(struct {
		Success      bool   `json:"success"`
		ErrorCode    string `json:"error_code"`
		ErrorSubcode string `json:"error_subcode"`
		Message      string `json:"message"`
		StatusCode   int    `json:"StatusCode"`
	}{false, code, "", "station: " + msg, status})
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "60")
	}
	if status == http.StatusForbidden || status == http.StatusRequestEntityTooLarge {
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func forward(w http.ResponseWriter, resp *Response) {
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// ServeHTTP answers <base>request-id and <base>serial, whatever the base
// path the gadget's device-service.url uses.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	log := p.cfg.Logger.With().Str("line", p.cfg.LineID).Str("remote", r.RemoteAddr).Str("path", truncate(r.URL.Path)).Logger()
	// Only the bench network, before anything of the body is read.
	if !p.allowed(r.RemoteAddr) {
		p.stats.forbidden.Add(1)
		log.Warn().Str("code", "forbidden").Msg("refused device request: the caller is outside proxy.allow")
		p.answerError(w, http.StatusForbidden, "forbidden", "this address may not use line "+p.cfg.LineID+"'s recording proxy")
		return
	}
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	default:
		p.stats.busy.Add(1)
		log.Warn().Str("code", "busy").Msg("refused device request: too many requests at once")
		p.answerError(w, http.StatusServiceUnavailable, "busy", "too many requests at once; retry later")
		return
	}
	var endpoint string
	switch {
	case strings.HasSuffix(r.URL.Path, "/request-id"):
		endpoint = "request-id"
	case strings.HasSuffix(r.URL.Path, "/serial"):
		endpoint = "serial"
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.Timeout)
	defer cancel()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	if endpoint == "request-id" {
		p.requestID(ctx, rec, log)
	} else {
		p.serial(ctx, rec, r, log)
	}
	log.Info().Str("endpoint", endpoint).Int("status", rec.status).Dur("took", time.Since(start)).Msg("device request")
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (p *Proxy) requestID(ctx context.Context, w http.ResponseWriter, log zerolog.Logger) {
	if p.cfg.Windows.OpenCount() == 0 {
		p.stats.noWindow.Add(1)
		log.Warn().Str("code", "no-window").Msg("refused request-id: no board of the line is registering")
		p.answerError(w, http.StatusForbidden, "no-window", "no board of line "+p.cfg.LineID+" is registering now")
		return
	}
	p.stats.requestIDs.Add(1)
	resp, err := p.cfg.Vault.Send(ctx, http.MethodPost, "request-id", nil, nil)
	if err != nil || resp.Status >= 500 {
		p.stats.unavailable.Add(1)
		log.Warn().Err(vaultProblem(resp, err)).Msg("vault unavailable for request-id; device will retry")
		p.answerError(w, http.StatusServiceUnavailable, "vault-unavailable", "the vault cannot be reached; retry later")
		return
	}
	if resp.Status >= 400 {
		if p.databaseDown(ctx, resp, log) {
			p.answerError(w, http.StatusServiceUnavailable, "vault-unavailable", "the vault's database is down; retry later")
			return
		}
		p.stats.vaultErrors.Add(1)
		log.Warn().Err(decodeVaultError(resp.Status, resp.Header, resp.Body)).Msg("vault refused request-id")
	} else if !p.issued(resp.Body) {
		p.stats.busy.Add(1)
		log.Warn().Msg("too many request-ids outstanding, or an answer without one; device will retry")
		p.answerError(w, http.StatusServiceUnavailable, "busy", "too many registrations at once; retry later")
		return
	}
	forward(w, resp)
}

// issued keeps the request-id of a vault's answer as usable once, for its
// lifetime; false when the answer has none or too many are outstanding.
func (p *Proxy) issued(body []byte) bool {
	var ans struct {
		RequestID string `json:"request-id"`
	}
	if json.Unmarshal(body, &ans) != nil || ans.RequestID == "" || len(ans.RequestID) > 256 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	if len(p.nonces) >= maxNonces {
		for id, n := range p.nonces {
			if now.After(n.expires) || n.spent {
				delete(p.nonces, id)
			}
		}
		if len(p.nonces) >= maxNonces {
			return false
		}
	}
	p.nonces[ans.RequestID] = nonce{expires: now.Add(p.cfg.NonceTTL)}
	return true
}

// spendNonce marks a request-id used; false when the vault did not issue
// it through the proxy, it expired or it was used.
func (p *Proxy) spendNonce(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.nonces[id]
	if !ok || n.spent || p.cfg.Now().After(n.expires) {
		return false
	}
	n.spent = true
	p.nonces[id] = n
	return true
}

// unspendNonce makes a request-id usable again: the vault never answered
// the request that carried it (the device sends the same request again).
func (p *Proxy) unspendNonce(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := p.nonces[id]; ok {
		n.spent = false
		p.nonces[id] = n
	}
}

// databaseDown reports whether a vault's invalid-api-key answer comes from
// a vault whose database is down (it refuses every key then, the line's
// right one too): the board should retry, not give up.
func (p *Proxy) databaseDown(ctx context.Context, resp *Response, log zerolog.Logger) bool {
	if resp.Status != http.StatusBadRequest || decodeVaultError(resp.Status, resp.Header, resp.Body).Code != "invalid-api-key" {
		return false
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := p.cfg.Vault.Health(hctx)
	if !errors.Is(err, ErrDatabaseDown) {
		return false
	}
	p.stats.unavailable.Add(1)
	log.Warn().Err(err).Msg("the vault refused the api-key because its database is down; answering 503 so the device retries")
	return true
}

func vaultProblem(resp *Response, err error) error {
	if err != nil {
		return err
	}
	return decodeVaultError(resp.Status, resp.Header, resp.Body)
}

// refuse answers a request the proxy will not forward.
func (p *Proxy) refuse(w http.ResponseWriter, log zerolog.Logger, code, msg string) {
	p.stats.refused.Add(1)
	log.Warn().Str("code", code).Msg("refused device request: " + msg)
	p.answerError(w, http.StatusBadRequest, code, msg)
}

// lockRequest serves identical requests one at a time: a copy of a request
// being served waits for it, then finds its answer in the cache.
func (p *Proxy) lockRequest(ctx context.Context, key [32]byte) (release func(), err error) {
	for {
		p.mu.Lock()
		ch, busy := p.inflight[key]
		if !busy {
			ch = make(chan struct{})
			p.inflight[key] = ch
			p.mu.Unlock()
			return func() {
				p.mu.Lock()
				delete(p.inflight, key)
				p.mu.Unlock()
				close(ch)
			}, nil
		}
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (p *Proxy) serial(ctx context.Context, w http.ResponseWriter, r *http.Request, log zerolog.Logger) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			p.stats.refused.Add(1)
			log.Warn().Str("code", "invalid-request").Msg("refused device request: body too large")
			p.answerError(w, http.StatusRequestEntityTooLarge, "invalid-request", fmt.Sprintf("a serial request is at most %d bytes", p.cfg.MaxBody))
			return
		}
		p.refuse(w, log, "invalid-request", "request body unreadable")
		return
	}
	key := sha256.Sum256(body)
	release, err := p.lockRequest(ctx, key)
	if err != nil {
		p.stats.busy.Add(1)
		p.answerError(w, http.StatusServiceUnavailable, "busy", "the same request is being served; retry later")
		return
	}
	defer release()
	if p.replay(ctx, w, key, log) {
		return
	}

	// Check the request before the vault spends its nonce on it.
	as, err := DecodeStream(body)
	if err != nil || len(as) < 2 {
		msg := "want a serial-request and a model"
		if err != nil {
			msg = err.Error()
		}
		p.refuse(w, log, "invalid-assertion", msg)
		return
	}
	req, err := AsSerialRequest(as[0])
	if err != nil {
		p.refuse(w, log, "invalid-assertion", err.Error())
		return
	}
	log = log.With().Str("device_key", req.DeviceKey.ID()).Logger()
	if req.BrandID != p.cfg.BrandID || req.Model != p.cfg.Model ||
		as[1].Type() != "model" || as[1].HeaderString("brand-id") != p.cfg.BrandID || as[1].HeaderString("model") != p.cfg.Model {
		p.refuse(w, log, "mismatched-model", fmt.Sprintf("line %s serves %s/%s, the request is for %s/%s",
			p.cfg.LineID, p.cfg.BrandID, p.cfg.Model, truncate(req.BrandID), truncate(req.Model)))
		return
	}
	if err := CheckBodyNesting(req.Body()); err != nil {
		p.refuse(w, log, "invalid-request", err.Error())
		return
	}
	serial, err := ProposedSerial(req)
	if err == nil && !ValidSerial(serial) {
		err = errors.New("no serial proposed (registration.proposed-serial or serial in the body)")
		if serial != "" {
			err = fmt.Errorf("proposed serial %q is not in the strict form", truncate(serial))
		}
	}
	if err != nil {
		p.refuse(w, log, "invalid-serial", err.Error())
		return
	}
	log = log.With().Str("serial", serial).Logger()

	// Only for a board the station is registering, one vault call at a
	// time per window, and only until the window has its identity.
	win, ok := p.window(w, serial, log)
	if !ok {
		return
	}
	select {
	case win.busy <- struct{}{}:
		defer func() { <-win.busy }()
	case <-ctx.Done():
		p.stats.busy.Add(1)
		p.answerError(w, http.StatusServiceUnavailable, "busy", "another request for this board is being served; retry later")
		return
	}
	if again, ok := p.window(w, serial, log); !ok {
		return
	} else if again != win {
		p.stats.busy.Add(1)
		p.answerError(w, http.StatusServiceUnavailable, "busy", "the board's registration window changed; retry later")
		return
	}
	log = log.With().Int64("unit", win.Unit).Str("slot", win.Slot).Logger()
	refusal := Refusal{LineID: p.cfg.LineID, Serial: serial, DeviceKeyID: req.DeviceKey.ID()}
	if !p.spendNonce(req.RequestID) {
		p.stats.badNonce.Add(1)
		msg := "request-id was not issued by the vault through this station, has expired or was used"
		log.Warn().Str("code", "invalid-nonce").Msg("refused serial request: " + msg)
		refusal.By, refusal.Status, refusal.Code, refusal.Message = RefusedByStation, http.StatusBadRequest, "invalid-nonce", msg
		p.refused(win, refusal)
		p.answerError(w, http.StatusBadRequest, "invalid-nonce", msg)
		return
	}

	// From here the vault may sign: its call does not end with the
	// device's connection, nor with the time spent waiting for the window,
	// so that what it signs is recorded.
	vctx, vcancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.Timeout)
	defer vcancel()
	resp, err := p.cfg.Vault.Send(vctx, http.MethodPost, "serial", body, http.Header{
		"Content-Type":             {AssertionType},
		"Snap-Device-Capabilities": {"serial-stream"},
	})
	switch {
	case err != nil || resp.Status >= 500:
		p.unspendNonce(req.RequestID) // the device sends this request again
		p.stats.unavailable.Add(1)
		log.Warn().Err(vaultProblem(resp, err)).Msg("vault unavailable for serial; device will retry")
		p.answerError(w, http.StatusServiceUnavailable, "vault-unavailable", "the vault cannot be reached; retry later")
		return
	case resp.Status == http.StatusAccepted:
		p.unspendNonce(req.RequestID)
		forward(w, resp) // the device sends the same request again later
		return
	case resp.Status != http.StatusOK && resp.Status != http.StatusCreated && p.databaseDown(vctx, resp, log):
		p.unspendNonce(req.RequestID) // refused at the api-key, before the nonce
		p.answerError(w, http.StatusServiceUnavailable, "vault-unavailable", "the vault's database is down; retry later")
		return
	case resp.Status != http.StatusOK && resp.Status != http.StatusCreated:
		p.stats.vaultErrors.Add(1)
		ve := decodeVaultError(resp.Status, resp.Header, resp.Body)
		log.Warn().Err(ve).Msg("vault refused serial request")
		refusal.By, refusal.Status, refusal.Code, refusal.Message = RefusedByVault, resp.Status, ve.Code, ve.Message
		p.refused(win, refusal)
		forward(w, resp)
		return
	}

	ans, err := p.checkAnswer(resp.Body, req, serial)
	if err != nil {
		p.stats.rejected.Add(1)
		log.Error().Err(err).Msg("vault answer refused: not recorded, not delivered")
		refusal.By, refusal.Status, refusal.Code, refusal.Message = RefusedByStation, http.StatusBadGateway, "invalid-vault-answer",
			"the vault's answer was refused: "+err.Error()
		p.refused(win, refusal)
		p.answerError(w, http.StatusBadGateway, "invalid-vault-answer", err.Error())
		return
	}
	s := ans.Serial
	entry := &cachedAnswer{serial: s, raw: resp.Body, window: win, expires: p.cfg.Now().Add(cacheTTL), record: record.SerialAssertion{
		Text: s.Encode(), BrandID: s.BrandID, Model: s.Model, Serial: s.Serial, Revision: s.Revision(),
		DeviceKeyID: s.DeviceKeyID, LineID: p.cfg.LineID, Via: record.ViaProxy, Duplicate: s.Revision() > 1,
		ReceivedAt: p.cfg.Now(),
	}}
	if p.cfg.Spool != nil {
		// On disk before anything else: the vault has signed it.
		sk, err := p.cfg.Spool.Put(spool.Entry{Assertion: entry.record, BodySHA256: hex.EncodeToString(key[:]), Answer: resp.Body})
		if err != nil {
			log.Error().Err(err).Msg("cannot spool the signed serial; it is kept in memory until the ledger takes it")
		}
		entry.spooled = sk
	}
	p.remember(key, entry)
	p.deliver(ctx, w, entry, r.RemoteAddr, log)
}

// Preload gives the proxy answers a previous run verified and recorded
// (from its spool), so that a board's retry of the same request gets its
// answer again; they are bound to no unit.
func (p *Proxy) Preload(entries []spool.Entry) int {
	n := 0
	for _, e := range entries {
		if e.Assertion.LineID != p.cfg.LineID || len(e.Answer) == 0 {
			continue
		}
		raw, err := hex.DecodeString(e.BodySHA256)
		if err != nil || len(raw) != sha256.Size {
			continue
		}
		ans, err := ParseSerialAnswer(e.Answer)
		if err != nil {
			continue
		}
		var key [32]byte
		copy(key[:], raw)
		p.remember(key, &cachedAnswer{serial: ans.Serial, raw: e.Answer, record: e.Assertion, recorded: true, expires: p.cfg.Now().Add(cacheTTL)})
		n++
	}
	return n
}

// window finds the open window a request for serial belongs to, or answers
// the device: 403 when none expects it (the vault is not called), 409 when
// its unit has its identity, 503 when several could take it.
func (p *Proxy) window(w http.ResponseWriter, serial string, log zerolog.Logger) (*Window, bool) {
	win, kind := p.cfg.Windows.match(serial)
	switch kind {
	case matchOK:
		return win, true
	case matchNone:
		p.stats.noWindow.Add(1)
		msg := fmt.Sprintf("no board of line %s is registering with serial %s", p.cfg.LineID, serial)
		if !p.cfg.Windows.Predicted() {
			msg = fmt.Sprintf("no board of line %s is registering now", p.cfg.LineID)
		}
		log.Warn().Str("code", "no-window").Msg("refused serial request: " + msg)
		p.answerError(w, http.StatusForbidden, "no-window", msg)
	case matchAmbiguous:
		p.stats.busy.Add(1)
		msg := fmt.Sprintf("several boards of line %s are registering and their serials are not known; retry later", p.cfg.LineID)
		log.Info().Str("code", "registration-busy").Msg("serial request deferred: " + msg)
		p.answerError(w, http.StatusServiceUnavailable, "registration-busy", msg)
	case matchTaken:
		p.stats.taken.Add(1)
		c, _, _ := win.State()
		msg := fmt.Sprintf("the board in slot %s (unit %d) already has an identity", win.Slot, win.Unit)
		if c != nil {
			msg = fmt.Sprintf("the board in slot %s (unit %d) already has an identity (serial %s, device key %s)", win.Slot, win.Unit, c.Serial, short(c.DeviceKeyID))
		}
		log.Warn().Str("code", "identity-taken").Int64("unit", win.Unit).Msg("refused serial request: " + msg)
		p.answerError(w, http.StatusConflict, "identity-taken", msg)
	}
	return nil, false
}

// refused keeps a refusal as the window's last and tells the station.
func (p *Proxy) refused(win *Window, r Refusal) {
	win.refused(r)
	r.Unit, r.Slot = win.Unit, win.Slot
	if p.cfg.OnRefusal != nil {
		p.cfg.OnRefusal(r)
	}
}

// checkAnswer verifies the vault's serial: signed by a trusted key of the
// line, for the line's brand and model, the requested serial and the
// requesting device's key.
func (p *Proxy) checkAnswer(body []byte, req *SerialRequest, serial string) (*SerialAnswer, error) {
	ans, err := ParseSerialAnswer(body)
	if err != nil {
		return nil, err
	}
	s := ans.Serial
	if _, err := p.cfg.Keys.Verify(s.Assertion); err != nil {
		return nil, err
	}
	switch {
	case s.AuthorityID() != p.cfg.BrandID || s.BrandID != p.cfg.BrandID:
		return nil, fmt.Errorf("serial signed for %s/%s, the line's brand is %s", s.AuthorityID(), s.BrandID, p.cfg.BrandID)
	case s.Model != req.Model:
		return nil, fmt.Errorf("serial is for model %s, the request for %s", s.Model, req.Model)
	case s.Serial != serial:
		return nil, fmt.Errorf("serial is %q, the device proposed %q", s.Serial, serial)
	case !s.DeviceKey.Equal(req.DeviceKey):
		return nil, fmt.Errorf("serial is for device key %s, the request came from %s", short(s.DeviceKeyID), short(req.DeviceKey.ID()))
	}
	return ans, nil
}

// deliver records the serial durably, tells the station, then answers the
// device. When it cannot record, the device gets 503 and retries; the
// verified answer waits in the cache for that retry.
func (p *Proxy) deliver(ctx context.Context, w http.ResponseWriter, e *cachedAnswer, remote string, log zerolog.Logger) {
	p.mu.Lock()
	recorded := e.recorded
	p.mu.Unlock()
	if !recorded {
		// The serial belongs to the window whose request the vault signed,
		// if that window is still open; else it is a serial without a unit.
		rec := e.record
		c := Capture{LineID: p.cfg.LineID, BrandID: rec.BrandID, Model: rec.Model,
			Serial: rec.Serial, DeviceKeyID: rec.DeviceKeyID, Revision: rec.Revision,
			Duplicate: rec.Duplicate, Assertion: e.serial.Assertion, RemoteAddr: remote}
		bound := e.window.bind()
		if bound {
			rec.UnitID = e.window.Unit
			c.Window, c.Unit, c.Slot = e.window.ID, e.window.Unit, e.window.Slot
		}
		// Nor does the ledger write end with the device's connection.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.Timeout)
		id, _, err := p.cfg.Recorder.RecordSerialAssertion(rctx, rec)
		rcancel()
		if err != nil {
			if bound {
				e.window.bound(nil)
			}
			p.stats.unavailable.Add(1)
			log.Error().Err(err).Msg("cannot record serial assertion; answering 503 so the device retries")
			// The station hears of it (the operator must free the ledger);
			// the serial is spooled, and the board's retry records it.
			r := Refusal{By: RefusedByStation, LineID: p.cfg.LineID, Serial: rec.Serial, DeviceKeyID: rec.DeviceKeyID,
				Status: http.StatusServiceUnavailable, Code: CodeStorageUnavailable, Message: "the ledger cannot record the serial: " + err.Error()}
			if e.window != nil {
				p.refused(e.window, r)
			} else if p.cfg.OnRefusal != nil {
				p.cfg.OnRefusal(r)
			}
			p.answerError(w, http.StatusServiceUnavailable, CodeStorageUnavailable, "the station cannot record the serial; retry later")
			return
		}
		c.AssertionID, c.At = id, p.cfg.Now()
		p.mu.Lock()
		e.recorded = true
		p.mu.Unlock()
		if e.spooled != "" {
			if err := p.cfg.Spool.Done(e.spooled); err != nil {
				log.Warn().Err(err).Msg("recorded, but its spool entry stays (replayed harmlessly at the next start)")
			}
		}
		p.stats.recorded.Add(1)
		if bound {
			e.window.bound(&c)
			log.Info().Int("revision", rec.Revision).Bool("duplicate", rec.Duplicate).Msg("serial assertion recorded")
		} else {
			p.stats.unbound.Add(1)
			log.Warn().Int("revision", rec.Revision).Msg("serial assertion recorded without a unit: its registration window had closed")
		}
		if p.cfg.OnCapture != nil {
			p.cfg.OnCapture(c)
		}
	}
	w.Header().Set("Content-Type", AssertionType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(e.raw)
}

func (p *Proxy) remember(key [32]byte, e *cachedAnswer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.cache) >= cacheMaxSize {
		for k, c := range p.cache {
			if c.recorded { // never a serial not recorded yet
				delete(p.cache, k)
			}
		}
	}
	p.cache[key] = e
}

// replay answers a request the proxy already has a verified answer for.
func (p *Proxy) replay(ctx context.Context, w http.ResponseWriter, key [32]byte, log zerolog.Logger) bool {
	p.mu.Lock()
	e, ok := p.cache[key]
	// An answer not recorded yet stays until it is: it is a serial the
	// vault signed, and its nonce is spent.
	if ok && e.recorded && p.cfg.Now().After(e.expires) {
		delete(p.cache, key)
		ok = false
	}
	p.mu.Unlock()
	if !ok {
		return false
	}
	p.stats.replayed.Add(1)
	log.Info().Str("serial", e.record.Serial).Msg("same serial request again: answering from the verified answer")
	p.deliver(ctx, w, e, "", log)
	return true
}
