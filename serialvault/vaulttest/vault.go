// Package vaulttest is a faithful double of Canonical's Serial Vault: the
// device-facing signing service and the admin signing log, behaving as
// ../shared/spec/serial-vault.md says, point by point (check order, error
// codes and exact JSON, single-use nonces spent at the nonce check,
// duplicates signed with revision + 1, local-time timestamps). It backs the
// tests, the simulated bench and `flashstation vault serve`. It also holds
// Device, a board that registers the way snapd does.
package vaulttest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/flashstation/flashstation/internal/yamlbound"
	"github.com/flashstation/flashstation/serialvault"
)

// Model is a model the vault signs serials for.
type Model struct {
	BrandID string
	Model   string
	APIKey  string // the model's api-key (one per model, shared by its lines)
	Key     *serialvault.PrivateKey
	// Inactive models (or signing keys) are refused with invalid-model.
	Inactive bool
}

// Options configures a Vault.
type Options struct {
	Models   []Model
	Version  string // default "2.9-double"
	Revision string // default "flashstation"
	// AdminUsers maps admin user names to their api-keys (signing log).
	AdminUsers map[string]string
	// Now is the clock (default time.Now); Location the vault's local time
	// zone for timestamps (default time.Local).
	Now      func() time.Time
	Location *time.Location
	// NonceTTL is how long a request-id is valid (default 600 s).
	NonceTTL time.Duration
	// MaxBody bounds request bodies (default 4 MiB).
	MaxBody int64
	// LogFile, when set, keeps the signing log in a file (JSON lines,
	// each row synced before its serial is answered), as the real vault
	// keeps it in its database: a vault opened again on it remembers what
	// it signed (and counts revisions on). Use Open.
	LogFile string
}

// LogEntry is one row of the signing log.
type LogEntry = serialvault.LogEntry

// Vault is the double. It is safe for concurrent use.
type Vault struct {
	opts Options

	mu          sync.Mutex
	nonces      map[string]time.Time // request-id -> expiry
	log         []LogEntry
	unavailable bool
	dbDown      bool
	failLogging bool
	requests    map[string]int // path -> count
	logFile     *os.File
}

// Open returns a vault serving the given models, with its signing log read
// from (and kept in) opts.LogFile when it is set.
func Open(opts Options) (*Vault, error) {
	v := New(Options{Models: opts.Models, Version: opts.Version, Revision: opts.Revision, AdminUsers: opts.AdminUsers,
		Now: opts.Now, Location: opts.Location, NonceTTL: opts.NonceTTL, MaxBody: opts.MaxBody})
	if opts.LogFile == "" {
		return v, nil
	}
	v.opts.LogFile = opts.LogFile
	f, err := os.OpenFile(opts.LogFile, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("vault double: signing log: %w", err)
	}
	dec := json.NewDecoder(io.LimitReader(f, 1<<30))
	for {
		var e LogEntry
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			f.Close()
			return nil, fmt.Errorf("vault double: signing log %s row %d: %w", opts.LogFile, len(v.log)+1, err)
		}
		v.log = append(v.log, e)
	}
	v.logFile = f
	return v, nil
}

// Close closes the signing log's file (a vault of New has none).
func (v *Vault) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.logFile == nil {
		return nil
	}
	err := v.logFile.Close()
	v.logFile = nil
	return err
}

// New returns a vault serving the given models (its signing log in memory;
// Open keeps it in a file).
func New(opts Options) *Vault {
	if opts.LogFile != "" {
		panic("vaulttest: a signing log file needs Open")
	}
	if opts.Version == "" {
		opts.Version = "2.9-double"
	}
	if opts.Revision == "" {
		opts.Revision = "flashstation"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.Local
	}
	if opts.NonceTTL == 0 {
		opts.NonceTTL = 600 * time.Second
	}
	if opts.MaxBody == 0 {
		opts.MaxBody = 4 << 20
	}
	return &Vault{opts: opts, nonces: map[string]time.Time{}, requests: map[string]int{}}
}

// SetUnavailable makes the vault drop every connection without an answer,
// as a vault that is down looks to a client (true), or serve again (false).
func (v *Vault) SetUnavailable(down bool) {
	v.mu.Lock()
	v.unavailable = down
	v.mu.Unlock()
}

// SetDatabaseDown makes the vault behave as the real one does when its
// database is down: /v1/version still answers, /v1/health answers 400 with
// the database error, and every call needing the database (the api-key
// check first) answers 400 invalid-api-key "Invalid API key used", as for
// a wrong key.
func (v *Vault) SetDatabaseDown(down bool) {
	v.mu.Lock()
	v.dbDown = down
	v.mu.Unlock()
}

// DatabaseDownError is the real vault's health answer with PostgreSQL down.
const DatabaseDownError = "dial unix /var/run/postgresql/.s.PGSQL.5432: connect: no such file or directory"

func (v *Vault) databaseDown() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.dbDown
}

// SetLoggingFailure makes writing the signing log fail (logging-assertion).
func (v *Vault) SetLoggingFailure(fail bool) {
	v.mu.Lock()
	v.failLogging = fail
	v.mu.Unlock()
}

// SigningLog returns a copy of the signing log.
func (v *Vault) SigningLog() []LogEntry {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]LogEntry(nil), v.log...)
}

// Requests returns how many requests reached a path.
func (v *Vault) Requests(path string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.requests[path]
}

// OpenNonces returns the number of unspent, unexpired request-ids.
func (v *Vault) OpenNonces() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.opts.Now()
	n := 0
	for _, exp := range v.nonces {
		if now.Before(exp) {
			n++
		}
	}
	return n
}

// errorBody is the vault's error JSON, fields in the vault's order.
type errorBody struct {
	Success      bool   `json:"success"`
	ErrorCode    string `json:"error_code"`
	ErrorSubcode string `json:"error_subcode"`
	Message      string `json:"message"`
	StatusCode   int    `json:"StatusCode"`
}

const jsonType = "application/json; charset=UTF-8"

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", jsonType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
	_, _ = w.Write([]byte("\n"))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{ErrorCode: code, Message: msg, StatusCode: status})
}

// route is one path with a handler per method.
type route map[string]http.HandlerFunc

// router answers 405 with an empty body for a wrong method on a known
// path, 404 for an unknown path, and 500 server-error on a panic.
func (v *Vault) router(routes map[string]route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v.mu.Lock()
		down := v.unavailable
		v.requests[r.URL.Path]++
		v.mu.Unlock()
		if down {
			dropConnection(w)
			return
		}
		defer func() {
			if p := recover(); p != nil {
				writeError(w, http.StatusInternalServerError, "server-error", fmt.Sprint(p))
			}
		}()
		rt, ok := routes[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h, ok := rt[r.Method]
		if !ok {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		h(w, r)
	})
}

// dropConnection closes the connection without an HTTP answer.
func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // reset, as a crashed server would
	}
	conn.Close()
}

// Handler is the device-facing signing service (default port 8080).
func (v *Vault) Handler() http.Handler {
	return v.router(map[string]route{
		"/v1/version":    {http.MethodGet: v.version},
		"/v1/health":     {http.MethodGet: v.health},
		"/v1/request-id": {http.MethodPost: v.requestID},
		"/v1/serial":     {http.MethodPost: v.serial},
	})
}

// AdminHandler is the admin service's signing log (default port 8081).
func (v *Vault) AdminHandler() http.Handler {
	return v.router(map[string]route{
		"/api/signinglog": {http.MethodGet: v.signingLog},
	})
}

func (v *Vault) version(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Version  string `json:"version"`
		Revision string `json:"revision"`
	}{v.opts.Version, v.opts.Revision})
}

func (v *Vault) health(w http.ResponseWriter, _ *http.Request) {
	if v.databaseDown() {
		writeJSON(w, http.StatusBadRequest, map[string]string{"database": DatabaseDownError})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"database": "healthy"})
}

// modelsForKey returns the models whose api-key is key (none while the
// database is down: the real vault cannot look the key up).
func (v *Vault) modelsForKey(key string) []Model {
	if v.databaseDown() {
		return nil
	}
	var out []Model
	for _, m := range v.opts.Models {
		if key != "" && m.APIKey == key {
			out = append(out, m)
		}
	}
	return out
}

func (v *Vault) requestID(w http.ResponseWriter, r *http.Request) {
	if len(v.modelsForKey(r.Header.Get("api-key"))) == 0 {
		writeError(w, http.StatusBadRequest, "invalid-api-key", "Invalid API key used")
		return
	}
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		writeError(w, http.StatusBadRequest, "generate-nonce", "Error generating the nonce")
		return
	}
	id := hex.EncodeToString(b)
	v.mu.Lock()
	now := v.opts.Now()
	for n, exp := range v.nonces { // forget expired ones
		if !now.Before(exp) {
			delete(v.nonces, n)
		}
	}
	v.nonces[id] = now.Add(v.opts.NonceTTL)
	v.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Success   bool   `json:"success"`
		Message   string `json:"message"`
		RequestID string `json:"request-id"`
	}{true, "", id})
}

// spendNonce validates and consumes a request-id.
func (v *Vault) spendNonce(id string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	exp, ok := v.nonces[id]
	if !ok {
		return false
	}
	delete(v.nonces, id)
	return v.opts.Now().Before(exp)
}

// serial signs a serial for a serial-request + model stream, following the
// vault's processing order exactly.
func (v *Vault) serial(w http.ResponseWriter, r *http.Request) {
	apiKey := r.Header.Get("api-key")
	// 1. api-key
	if len(v.modelsForKey(apiKey)) == 0 {
		writeError(w, http.StatusBadRequest, "invalid-api-key", "Invalid API key used")
		return
	}
	// 2. the stream
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, v.opts.MaxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid-assertion", err.Error())
		return
	}
	if len(bytes.TrimSpace(data)) == 0 {
		writeError(w, http.StatusBadRequest, "empty-data", "No data supplied for signing")
		return
	}
	dec := serialvault.NewDecoder(bytes.NewReader(data))
	first, err := dec.Decode()
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid-assertion", err.Error())
		return
	}
	if first.Type() != "serial-request" {
		writeError(w, http.StatusBadRequest, "invalid-type", "The assertion type must be 'serial-request'")
		return
	}
	second, err := dec.Decode()
	if err != nil && err != io.EOF {
		writeError(w, http.StatusBadRequest, "invalid-assertion", err.Error())
		return
	}
	if err == io.EOF || second.Type() != "model" {
		writeError(w, http.StatusBadRequest, "invalid-second-type", "The assertion type must be 'model'")
		return
	}
	for n := 3; ; n++ {
		extra, err := dec.Decode()
		if err == io.EOF {
			break
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid-assertion", err.Error())
			return
		}
		if n > 3 || extra.Type() != "serial" {
			writeError(w, http.StatusBadRequest, "invalid-assertion", "Too many assertions in the request")
			return
		}
	}
	// 3. the request's self-signature
	req, err := serialvault.AsSerialRequest(first)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid-assertion", err.Error())
		return
	}
	// 4. the model names the same brand and model (its signature is not checked)
	if second.HeaderString("brand-id") != req.BrandID || second.HeaderString("model") != req.Model {
		writeError(w, http.StatusBadRequest, "mismatched-model", "Model and serial-request assertion do not match")
		return
	}
	// 5. the nonce, spent here even if a later step fails
	if !v.spendNonce(req.RequestID) {
		writeError(w, http.StatusBadRequest, "invalid-nonce", "Nonce is invalid or expired")
		return
	}
	// 6. the model for this api-key
	var model *Model
	for _, m := range v.modelsForKey(apiKey) {
		if m.BrandID == req.BrandID && m.Model == req.Model {
			m := m
			model = &m
		}
	}
	if model == nil || model.Inactive || model.Key == nil {
		writeError(w, http.StatusBadRequest, "invalid-model", "Cannot find a matching model or sub-store model")
		return
	}
	// 7. the serial number: the request's serial header, else the body's
	serial := proposedSerial(req)
	if serial == "" {
		writeError(w, http.StatusBadRequest, "create-assertion", "Error generating the serial assertion: the serial number is empty")
		return
	}
	// 8. duplicates are signed again with the next revision
	v.mu.Lock()
	revision := 1
	for _, e := range v.log {
		if (e.Make == req.BrandID && e.Model == req.Model && e.SerialNumber == serial) || e.Fingerprint == req.SignKeyID() {
			revision = max(revision, e.Revision+1)
		}
	}
	v.mu.Unlock()
	// 9. sign and log
	now := v.opts.Now()
	headers := map[string]any{
		"type":                "serial",
		"authority-id":        req.BrandID,
		"revision":            strconv.Itoa(revision),
		"brand-id":            req.BrandID,
		"model":               req.Model,
		"serial":              serial,
		"device-key":          req.HeaderString("device-key"),
		"device-key-sha3-384": req.SignKeyID(),
		"timestamp":           now.In(v.opts.Location).Format(time.RFC3339),
	}
	signed, err := serialvault.Sign(headers, req.Body(), model.Key, now)
	if err != nil {
		writeError(w, http.StatusBadRequest, "create-assertion", "Error signing the serial assertion: "+err.Error())
		return
	}
	v.mu.Lock()
	if v.failLogging {
		v.mu.Unlock()
		writeError(w, http.StatusBadRequest, "logging-assertion", "Error logging the serial assertion")
		return
	}
	row := LogEntry{ID: len(v.log) + 1, Make: req.BrandID, Model: req.Model, SerialNumber: serial,
		Fingerprint: req.SignKeyID(), Created: now.In(v.opts.Location), Revision: revision}
	if err := v.keepLocked(row); err != nil {
		v.mu.Unlock()
		writeError(w, http.StatusBadRequest, "logging-assertion", "Error logging the serial assertion")
		return
	}
	v.log = append(v.log, row)
	v.mu.Unlock()
	w.Header().Set("Content-Type", "application/x.ubuntu.assertion")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(signed.Encode())
}

// keepLocked writes a signing log row to the log file (if any) and syncs
// it; v.mu is held.
func (v *Vault) keepLocked(row LogEntry) error {
	if v.logFile == nil {
		if v.opts.LogFile != "" {
			return errors.New("vault double: closed")
		}
		return nil
	}
	data, err := json.Marshal(row)
	if err != nil {
		return err
	}
	if _, err := v.logFile.Write(append(data, '\n')); err != nil {
		return err
	}
	return v.logFile.Sync()
}

// signingLogBody is the admin API's envelope.
type signingLogBody struct {
	Success      bool       `json:"success"`
	ErrorCode    string     `json:"error_code"`
	ErrorSubcode string     `json:"error_subcode"`
	Message      string     `json:"message"`
	Logs         []LogEntry `json:"logs"`
	TotalCount   int        `json:"total_count"`
}

func (v *Vault) signingLog(w http.ResponseWriter, r *http.Request) {
	user, key := r.Header.Get("user"), r.Header.Get("api-key")
	if want, ok := v.opts.AdminUsers[user]; !ok || user == "" || key == "" || want != key || v.databaseDown() {
		writeJSON(w, http.StatusBadRequest, signingLogBody{ErrorCode: "error-auth", Message: "sql: no rows in result set", Logs: []LogEntry{}})
		return
	}
	logs := v.SigningLog()
	if logs == nil {
		logs = []LogEntry{}
	}
	// As the real vault: the newest rows first, at most SigningLogWindow of
	// them, no paging; synced and Total are numbers, total_count is 0.
	sort.Slice(logs, func(i, j int) bool { return logs[i].ID > logs[j].ID })
	if len(logs) > serialvault.SigningLogWindow {
		logs = logs[:serialvault.SigningLogWindow]
	}
	writeJSON(w, http.StatusOK, signingLogBody{Success: true, Logs: logs, TotalCount: 0})
}

// bodyLimits bound the YAML body the double decodes.
var bodyLimits = yamlbound.Limits{What: "serial-request body", MaxBytes: serialvault.MaxBodySize}

// proposedSerial is the vault's rule: the serial header, else the serial
// key of the body decoded as YAML (the real vault decodes the whole body;
// the double does too, within bounds).
func proposedSerial(req *serialvault.SerialRequest) string {
	if req.Serial != "" {
		return req.Serial
	}
	var body map[string]any
	if yamlbound.Decode("serial-request body", req.Body(), &body, bodyLimits) == nil {
		if s, ok := body["serial"]; ok && s != nil {
			// The real vault asserts a string here: a number (an unquoted
			// serial: 12345) panics it, after the nonce was spent.
			return s.(string)
		}
	}
	return ""
}
