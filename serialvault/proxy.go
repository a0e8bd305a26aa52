package serialvault

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/internal/yamlbound"
	"github.com/flashstation/flashstation/ledger"
)

// Recorder writes serial assertions durably; *ledger.Ledger is one.
type Recorder interface {
	RecordSerialAssertion(ctx context.Context, a ledger.SerialAssertion) (id int64, created bool, err error)
}

// Capture is a serial assertion the proxy recorded and delivered, handed to
// the station so the pipeline can tie it to a slot by serial number or
// device key.
type Capture struct {
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

// Refusal is a board's serial request the vault refused.
type Refusal struct {
	LineID      string
	Serial      string // the serial the board proposed
	DeviceKeyID string
	Status      int
	Code        string // the vault's error_code
	Message     string
}

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
	// OnCapture is called after a serial is recorded; it must not block.
	OnCapture func(Capture)
	// OnRefusal is called when the vault refuses a board's serial request
	// (a 4xx answer, forwarded to the board); it must not block.
	OnRefusal func(Refusal)
	Logger    zerolog.Logger
	// MaxBody bounds request bodies (default 4 MiB); Timeout bounds a
	// vault call (default 30 s).
	MaxBody int64
	Timeout time.Duration
	Now     func() time.Time
}

// ProxyStats counts what the proxy did.
type ProxyStats struct {
	RequestIDs  int64 // request-id calls forwarded
	Recorded    int64 // serials recorded and delivered
	Replayed    int64 // answers served again from the cache
	Refused     int64 // requests the proxy refused itself (4xx)
	VaultErrors int64 // vault 4xx answers forwarded
	Unavailable int64 // 503s: vault unreachable or storage failing
	Rejected    int64 // vault answers refused (forged or mismatched)
}

// Proxy is a line's recording proxy: it forwards request-id and serial to
// the line's vault with the line's api-key, checks both directions, and
// writes every serial to the ledger before the device sees it.
type Proxy struct {
	cfg   ProxyConfig
	stats struct {
		requestIDs, recorded, replayed, refused, vaultErrors, unavailable, rejected atomic.Int64
	}

	mu    sync.Mutex
	cache map[[32]byte]*cachedAnswer // by serial request body
}

// cachedAnswer is a verified vault answer for one serial request, kept so
// that the device's retry of the same request (same, already spent nonce)
// gets it: after a storage failure (recorded false) or a lost answer.
type cachedAnswer struct {
	serial   *Serial
	raw      []byte
	record   ledger.SerialAssertion
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
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 4 << 20
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Proxy{cfg: cfg, cache: map[[32]byte]*cachedAnswer{}}, nil
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() ProxyStats {
	return ProxyStats{
		RequestIDs: p.stats.requestIDs.Load(), Recorded: p.stats.recorded.Load(), Replayed: p.stats.replayed.Load(),
		Refused: p.stats.refused.Load(), VaultErrors: p.stats.vaultErrors.Load(),
		Unavailable: p.stats.unavailable.Load(), Rejected: p.stats.rejected.Load(),
	}
}

// Serve runs the proxy on l until ctx ends.
func (p *Proxy) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      p.cfg.Timeout + 30*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
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
	log := p.cfg.Logger.With().Str("line", p.cfg.LineID).Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Logger()
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
	p.stats.requestIDs.Add(1)
	resp, err := p.cfg.Vault.Send(ctx, http.MethodPost, "request-id", nil, nil)
	if err != nil || resp.Status >= 500 {
		p.stats.unavailable.Add(1)
		log.Warn().Err(vaultProblem(resp, err)).Msg("vault unavailable for request-id; device will retry")
		p.answerError(w, http.StatusServiceUnavailable, "vault-unavailable", "the vault cannot be reached; retry later")
		return
	}
	if resp.Status >= 400 {
		p.stats.vaultErrors.Add(1)
		log.Warn().Err(decodeVaultError(resp.Status, resp.Header, resp.Body)).Msg("vault refused request-id")
	}
	forward(w, resp)
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

func (p *Proxy) serial(ctx context.Context, w http.ResponseWriter, r *http.Request, log zerolog.Logger) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.cfg.MaxBody))
	if err != nil {
		p.refuse(w, log, "invalid-request", fmt.Sprintf("request body unreadable or larger than %d bytes", p.cfg.MaxBody))
		return
	}
	key := sha256.Sum256(body)
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
			p.cfg.LineID, p.cfg.BrandID, p.cfg.Model, req.BrandID, req.Model))
		return
	}
	serial := ProposedSerial(req)
	if !ValidSerial(serial) {
		msg := "no serial proposed (registration.proposed-serial or serial in the body)"
		if serial != "" {
			msg = fmt.Sprintf("proposed serial %q is not in the strict form", truncate(serial))
		}
		p.refuse(w, log, "invalid-serial", msg)
		return
	}
	log = log.With().Str("serial", serial).Logger()

	resp, err := p.cfg.Vault.Send(ctx, http.MethodPost, "serial", body, http.Header{
		"Content-Type":             {AssertionType},
		"Snap-Device-Capabilities": {"serial-stream"},
	})
	switch {
	case err != nil || resp.Status >= 500:
		p.stats.unavailable.Add(1)
		log.Warn().Err(vaultProblem(resp, err)).Msg("vault unavailable for serial; device will retry")
		p.answerError(w, http.StatusServiceUnavailable, "vault-unavailable", "the vault cannot be reached; retry later")
		return
	case resp.Status == http.StatusAccepted:
		forward(w, resp) // the device sends the same request again later
		return
	case resp.Status != http.StatusOK && resp.Status != http.StatusCreated:
		p.stats.vaultErrors.Add(1)
		ve := decodeVaultError(resp.Status, resp.Header, resp.Body)
		log.Warn().Err(ve).Msg("vault refused serial request")
		if p.cfg.OnRefusal != nil {
			p.cfg.OnRefusal(Refusal{LineID: p.cfg.LineID, Serial: serial, DeviceKeyID: req.DeviceKey.ID(),
				Status: resp.Status, Code: ve.Code, Message: ve.Message})
		}
		forward(w, resp)
		return
	}

	ans, err := p.checkAnswer(resp.Body, req, serial)
	if err != nil {
		p.stats.rejected.Add(1)
		log.Error().Err(err).Msg("vault answer refused: not recorded, not delivered")
		p.answerError(w, http.StatusBadGateway, "invalid-vault-answer", err.Error())
		return
	}
	s := ans.Serial
	entry := &cachedAnswer{serial: s, raw: resp.Body, expires: p.cfg.Now().Add(cacheTTL), record: ledger.SerialAssertion{
		Text: s.Encode(), BrandID: s.BrandID, Model: s.Model, Serial: s.Serial, Revision: s.Revision(),
		DeviceKeyID: s.DeviceKeyID, LineID: p.cfg.LineID, Via: ledger.ViaProxy, Duplicate: s.Revision() > 1,
		ReceivedAt: p.cfg.Now(),
	}}
	p.remember(key, entry)
	p.deliver(ctx, w, entry, r.RemoteAddr, log)
}

// requestBodyLimits bound the YAML body of a serial-request, which any
// device on the line's network can send: no alias bomb or deep nesting.
var requestBodyLimits = yamlbound.Limits{What: "serial-request body", MaxBytes: MaxBodySize}

// ProposedSerial is the serial a request proposes: its serial header, else
// the serial key of its YAML body (the vault's rule).
func ProposedSerial(req *SerialRequest) string {
	if req.Serial != "" {
		return req.Serial
	}
	var body map[string]any
	if yamlbound.Decode("serial-request body", req.Body(), &body, requestBodyLimits) == nil {
		if s, ok := body["serial"]; ok && s != nil {
			return fmt.Sprint(s)
		}
	}
	return ""
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
		id, _, err := p.cfg.Recorder.RecordSerialAssertion(ctx, e.record)
		if err != nil {
			p.stats.unavailable.Add(1)
			log.Error().Err(err).Msg("cannot record serial assertion; answering 503 so the device retries")
			p.answerError(w, http.StatusServiceUnavailable, "storage-unavailable", "the station cannot record the serial; retry later")
			return
		}
		p.mu.Lock()
		e.recorded = true
		p.mu.Unlock()
		p.stats.recorded.Add(1)
		log.Info().Int("revision", e.record.Revision).Bool("duplicate", e.record.Duplicate).Msg("serial assertion recorded")
		if p.cfg.OnCapture != nil {
			p.cfg.OnCapture(Capture{LineID: p.cfg.LineID, BrandID: e.record.BrandID, Model: e.record.Model,
				Serial: e.record.Serial, DeviceKeyID: e.record.DeviceKeyID, Revision: e.record.Revision,
				Duplicate: e.record.Duplicate, AssertionID: id, Assertion: e.serial.Assertion, RemoteAddr: remote, At: p.cfg.Now()})
		}
	}
	w.Header().Set("Content-Type", AssertionType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(e.raw)
}

func (p *Proxy) remember(key [32]byte, e *cachedAnswer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	if len(p.cache) >= cacheMaxSize {
		for k, c := range p.cache {
			if now.After(c.expires) || c.recorded {
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
	if ok && p.cfg.Now().After(e.expires) {
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
