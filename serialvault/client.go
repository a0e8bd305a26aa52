package serialvault

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/secret"
)

// AssertionType is the media type of assertion streams.
const AssertionType = "application/x.ubuntu.assertion"

// maxResponse bounds what the client reads from a vault.
const maxResponse = 4 << 20

// VaultError is an error answer of the vault (HTTP 4xx or 5xx), decoded from
// its JSON body when there is one.
type VaultError struct {
	Status  int
	Code    string // error_code, e.g. invalid-nonce
	Subcode string
	Message string
}

func (e *VaultError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vault answered HTTP %d", e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	return b.String()
}

// Temporary reports whether a retry may succeed (status above 500, as
// snapd treats it).
func (e *VaultError) Temporary() bool { return e.Status > 500 }

// decodeVaultError builds a VaultError from a response, reading the JSON
// envelope whatever the charset parameter of its content type.
func decodeVaultError(status int, header http.Header, body []byte) *VaultError {
	e := &VaultError{Status: status}
	mt, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
	trimmed := bytes.TrimSpace(body)
	if mt == "application/json" || (len(trimmed) > 0 && trimmed[0] == '{') {
		var env struct {
			ErrorCode    string `json:"error_code"`
			ErrorSubcode string `json:"error_subcode"`
			Message      string `json:"message"`
		}
		if json.Unmarshal(trimmed, &env) == nil {
			e.Code, e.Subcode, e.Message = env.ErrorCode, env.ErrorSubcode, env.Message
			return e
		}
	}
	if len(trimmed) > 0 && len(trimmed) < 512 {
		e.Message = string(trimmed)
	}
	return e
}

// ClientOptions configures a vault client.
type ClientOptions struct {
	// APIKey is sent as the api-key header on request-id and serial.
	APIKey secret.Value
	// CAFile is an optional PEM bundle trusted for an https vault.
	CAFile string
	// HTTPClient replaces the default client (timeouts, TLS) when set.
	HTTPClient *http.Client
	// Timeout bounds each request (default 30 s).
	Timeout time.Duration
	// Attempts is how many times a request is sent when the network fails
	// or the vault answers above 500 (default 4; 1 disables retries).
	Attempts int
	// Backoff is the first wait between attempts, doubled each time
	// (default 1 s).
	Backoff time.Duration
	// PollInterval is how long to wait before sending the same serial
	// request again after a 202 (default 60 s, as snapd).
	PollInterval time.Duration
	Logger       zerolog.Logger
}

// Client talks to a Serial Vault's device-facing API.
type Client struct {
	base *url.URL
	opts ClientOptions
	http *http.Client
}

// NewClient returns a client for the vault at baseURL (for example
// http://vault:8080/v1/).
func NewClient(baseURL string, opts ClientOptions) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("vault URL %q is not an http(s) URL", baseURL)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Attempts == 0 {
		opts.Attempts = 4
	}
	if opts.Backoff == 0 {
		opts.Backoff = time.Second
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 60 * time.Second
	}
	hc := opts.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = opts.Timeout
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("vault CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("vault CA file %s holds no PEM certificate", opts.CAFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		hc = &http.Client{Transport: tr, Timeout: opts.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &Client{base: u, opts: opts, http: hc}, nil
}

// URL returns the vault's base URL.
func (c *Client) URL() string { return c.base.String() }

// Response is a raw vault answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Send sends one request to path (relative to the base URL) with the
// api-key, once, and returns the answer whatever its status. Network errors
// are returned as errors. The recording proxy forwards with it.
func (c *Client) Send(ctx context.Context, method, path string, body []byte, header http.Header) (*Response, error) {
	u := c.base.ResolveReference(&url.URL{Path: strings.TrimPrefix(path, "/")})
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if !c.opts.APIKey.IsZero() {
		req.Header.Set("api-key", c.opts.APIKey.Reveal())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// The URL error names the vault, never the api-key (a header).
		return nil, fmt.Errorf("vault %s: %w", u.Redacted(), unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("vault %s: read answer: %w", u.Redacted(), err)
	}
	if len(data) > maxResponse {
		return nil, fmt.Errorf("vault %s: answer larger than %d bytes", u.Redacted(), maxResponse)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// do sends with retries on network errors and status above 500, and turns
// any non-2xx status into a *VaultError.
func (c *Client) do(ctx context.Context, method, path string, body []byte, header http.Header) (*Response, error) {
	wait := c.opts.Backoff
	var lastErr error
	for attempt := 1; ; attempt++ {
		resp, err := c.Send(ctx, method, path, body, header)
		switch {
		case err != nil:
			lastErr = err
		case resp.Status > 500:
			lastErr = decodeVaultError(resp.Status, resp.Header, resp.Body)
		case resp.Status >= 300:
			return resp, decodeVaultError(resp.Status, resp.Header, resp.Body)
		default:
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%v)", ctx.Err(), lastErr)
		}
		if attempt >= c.opts.Attempts {
			return nil, lastErr
		}
		c.opts.Logger.Debug().Err(lastErr).Int("attempt", attempt).Dur("retry_in", wait).Msg("vault request failed")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%v)", ctx.Err(), lastErr)
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// Version is the vault's version answer.
type Version struct {
	Version  string `json:"version"`
	Revision string `json:"revision"`
}

// Version asks the vault for its version (no api-key needed).
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	resp, err := c.do(ctx, http.MethodGet, "version", nil, nil)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(resp.Body, &v); err != nil || v.Version == "" {
		return v, fmt.Errorf("vault %s: version answer is not the vault's JSON: %q", c.base.Redacted(), truncate(string(resp.Body)))
	}
	return v, nil
}

// ErrDatabaseDown is a vault that answers but cannot reach its database:
// it refuses every api-key (400 invalid-api-key) until it is back.
var ErrDatabaseDown = errors.New("vault database down")

// Health asks the vault whether it can reach its database (GET
// /v1/health; no api-key needed). A vault without that route is asked for
// its version instead. The error wraps ErrDatabaseDown when the vault
// says its database is down.
func (c *Client) Health(ctx context.Context) error {
	resp, err := c.Send(ctx, http.MethodGet, "health", nil, nil)
	if err != nil {
		return err
	}
	var body struct {
		Database string `json:"database"`
	}
	decoded := json.Unmarshal(resp.Body, &body) == nil && body.Database != ""
	switch {
	case resp.Status == http.StatusOK && decoded && body.Database == "healthy":
		return nil
	case resp.Status == http.StatusNotFound || resp.Status == http.StatusMethodNotAllowed:
		_, err := c.Version(ctx) // an older vault: alive is all it can say
		return err
	case decoded:
		return fmt.Errorf("%w: %s", ErrDatabaseDown, truncate(body.Database))
	}
	return decodeVaultError(resp.Status, resp.Header, resp.Body)
}

// RequestID asks for a new single-use nonce (40 hex characters).
func (c *Client) RequestID(ctx context.Context) (string, error) {
	resp, err := c.do(ctx, http.MethodPost, "request-id", nil, nil)
	if err != nil {
		return "", err
	}
	var body struct {
		Success   bool   `json:"success"`
		RequestID string `json:"request-id"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil || body.RequestID == "" {
		return "", fmt.Errorf("vault %s: request-id answer holds no request-id: %q", c.base.Redacted(), truncate(string(resp.Body)))
	}
	return body.RequestID, nil
}

// SerialAnswer is a serial assertion received from a vault, with the other
// assertions of the answer stream (account-key, account) if any.
type SerialAnswer struct {
	Serial *Serial
	Others []*Assertion
	Raw    []byte // the answer body as received
}

// ParseSerialAnswer checks a vault's 200 answer: a stream holding exactly
// one serial assertion plus, optionally, account and account-key ones.
func ParseSerialAnswer(body []byte) (*SerialAnswer, error) {
	as, err := DecodeStream(body)
	if err != nil {
		return nil, fmt.Errorf("vault answer: %w", err)
	}
	ans := &SerialAnswer{Raw: body}
	for _, a := range as {
		switch a.Type() {
		case "serial":
			if ans.Serial != nil {
				return nil, fmt.Errorf("vault answer holds more than one serial assertion")
			}
			s, err := AsSerial(a)
			if err != nil {
				return nil, fmt.Errorf("vault answer: %w", err)
			}
			ans.Serial = s
		case "account", "account-key":
			ans.Others = append(ans.Others, a)
		default:
			return nil, fmt.Errorf("vault answer holds an unexpected %s assertion", a.Type())
		}
	}
	if ans.Serial == nil {
		return nil, fmt.Errorf("vault answer holds no serial assertion")
	}
	return ans, nil
}

// Serial sends a serial-request stream (serial-request then model) and
// returns the signed serial. A 202 answer is handled like snapd: the same
// request is sent again after PollInterval, until ctx ends.
func (c *Client) Serial(ctx context.Context, stream []byte) (*SerialAnswer, error) {
	header := http.Header{"Content-Type": {AssertionType}, "Snap-Device-Capabilities": {"serial-stream"}}
	for {
		resp, err := c.do(ctx, http.MethodPost, "serial", stream, header)
		if err != nil {
			return nil, err
		}
		if resp.Status == http.StatusAccepted {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("vault still processing (202): %w", ctx.Err())
			case <-time.After(c.opts.PollInterval):
				continue
			}
		}
		return ParseSerialAnswer(resp.Body)
	}
}

// LogEntry is one row of the vault's signing log.
type LogEntry struct {
	ID           int       `json:"id"`
	Make         string    `json:"make"`
	Model        string    `json:"model"`
	SerialNumber string    `json:"serialnumber"`
	Fingerprint  string    `json:"fingerprint"` // device-key SHA3-384 id
	Created      time.Time `json:"created"`
	Revision     int       `json:"revision"`
	Synced       int       `json:"synced"` // a number in the real vault's answer
	Total        int       `json:"Total"`  // always 0 in the real vault's answer
}

// SigningLogWindow is how many rows the vault's signing log answers at
// most: the newest, without paging. A reconciliation can prove only what
// lies inside it.
const SigningLogWindow = 10000

// SigningLog reads the admin service's signing log (GET /api/signinglog)
// with an admin user and that user's api-key. adminURL is the admin
// service's base URL, for example http://vault:8081/.
func (c *Client) SigningLog(ctx context.Context, adminURL, user string, key secret.Value) ([]LogEntry, error) {
	admin, err := NewClient(adminURL, ClientOptions{HTTPClient: c.http, Attempts: c.opts.Attempts, Backoff: c.opts.Backoff})
	if err != nil {
		return nil, err
	}
	resp, err := admin.do(ctx, http.MethodGet, "api/signinglog", nil, http.Header{"user": {user}, "api-key": {key.Reveal()}})
	if err != nil {
		return nil, err
	}
	var body struct {
		Success bool       `json:"success"`
		Logs    []LogEntry `json:"logs"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil || !body.Success {
		return nil, fmt.Errorf("signing log answer is not the vault's JSON: %q", truncate(string(resp.Body)))
	}
	return body.Logs, nil
}
