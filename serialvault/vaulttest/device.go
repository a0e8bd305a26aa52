package vaulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/flashstation/flashstation/serialvault"
)

// Device registers with a device service the way snapd does on first boot
// (the "Initialize device" change): POST <url>request-id, then POST
// <url>serial with a serial-request signed by the device key and the model,
// with snapd's handling of 200, 202, status above 500 and other errors.
type Device struct {
	Key   *serialvault.PrivateKey
	Model *serialvault.Assertion // the device's model assertion (sent as is)
	// Serial is registration.proposed-serial; Body registration.body.
	Serial string
	Body   []byte
	// URL is device-service.url (snapd appends "/" when missing) and
	// Headers device-service.headers (e.g. {"api-key": ...}).
	URL     string
	Headers map[string]string
	HTTP    *http.Client

	// snapd's waits: 60 s after a status above 500 (30 s without network),
	// 60 s between polls after 202, 5 min (doubling) after a failed
	// attempt. Tests shorten them.
	RetryWait     time.Duration
	NoNetworkWait time.Duration
	PollWait      time.Duration
	FailWait      time.Duration
	// MaxFailures ends Register after that many failed attempts (0: never).
	MaxFailures int
	// StaleRequestID sends a request-id the vault never issued, so the
	// vault refuses every attempt (invalid-nonce): a fault for tests and
	// the simulated bench.
	StaleRequestID bool
	Now            func() time.Time
}

// Result is what one registration went through.
type Result struct {
	Serial   *serialvault.Serial
	Raw      []byte // the serial answer as received
	Failures []error
	Retries  int // resends after 5xx, network errors or 202
}

func (d *Device) wait(ctx context.Context, dur time.Duration) error {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (d *Device) defaults() {
	if d.RetryWait == 0 {
		d.RetryWait = 60 * time.Second
	}
	if d.NoNetworkWait == 0 {
		d.NoNetworkWait = 30 * time.Second
	}
	if d.PollWait == 0 {
		d.PollWait = 60 * time.Second
	}
	if d.FailWait == 0 {
		d.FailWait = 5 * time.Minute
	}
	if d.HTTP == nil {
		d.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if d.Now == nil {
		d.Now = time.Now
	}
}

// errTransient marks answers snapd retries with the same request.
type errTransient struct {
	err       error
	noNetwork bool
}

func (e errTransient) Error() string { return e.err.Error() }

func (d *Device) post(ctx context.Context, what string, body []byte, contentType string) ([]byte, int, error) {
	base := d.URL
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+what, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	for k, v := range d.Headers {
		req.Header.Set(k, v)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Snap-Device-Capabilities", "serial-stream")
	}
	resp, err := d.HTTP.Do(req)
	if err != nil {
		return nil, 0, errTransient{err: err, noNetwork: true}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, 0, errTransient{err: err, noNetwork: true}
	}
	if resp.StatusCode > 500 {
		return nil, resp.StatusCode, errTransient{err: fmt.Errorf("%s: unexpected status %d", what, resp.StatusCode)}
	}
	return data, resp.StatusCode, nil
}

// Register runs the registration until a serial is obtained, ctx ends or
// MaxFailures attempts failed.
func (d *Device) Register(ctx context.Context) (*Result, error) {
	d.defaults()
	res := &Result{}
	failWait := d.FailWait
	for {
		err := d.attempt(ctx, res)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return res, err
		}
		res.Failures = append(res.Failures, err)
		if d.MaxFailures > 0 && len(res.Failures) >= d.MaxFailures {
			return res, fmt.Errorf("registration failed %d times, last: %w", len(res.Failures), err)
		}
		if err := d.wait(ctx, failWait); err != nil {
			return res, err
		}
		failWait *= 2
	}
}

// attempt is one run of the change: a new request-id, then the serial
// request, resent as snapd does on 202 and transient errors.
func (d *Device) attempt(ctx context.Context, res *Result) error {
	data, status, err := d.postRetrying(ctx, res, "request-id", nil, "")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("cannot get request-id: unexpected status %d", status)
	}
	var idAnswer struct {
		RequestID string `json:"request-id"`
	}
	if err := json.Unmarshal(data, &idAnswer); err != nil || idAnswer.RequestID == "" {
		return fmt.Errorf("cannot get request-id: bad answer %q", data)
	}
	requestID := idAnswer.RequestID
	if d.StaleRequestID {
		requestID = strings.Repeat("0", 40)
	}
	req, err := serialvault.NewSerialRequest(d.Key, d.Model.HeaderString("brand-id"), d.Model.HeaderString("model"),
		requestID, d.Serial, d.Body, d.Now())
	if err != nil {
		return err
	}
	stream := append(req.Encode(), '\n')
	stream = append(stream, d.Model.Encode()...)
	for {
		data, status, err := d.postRetrying(ctx, res, "serial", stream, serialvault.AssertionType)
		if err != nil {
			return err
		}
		switch status {
		case http.StatusOK, http.StatusCreated:
		case http.StatusAccepted:
			res.Retries++
			if err := d.wait(ctx, d.PollWait); err != nil {
				return err
			}
			continue
		default:
			// snapd reads a JSON message only for exactly application/json;
			// with a real vault it logs just the status.
			return fmt.Errorf("cannot deliver device serial request: unexpected status %d", status)
		}
		ans, err := serialvault.ParseSerialAnswer(data)
		if err != nil {
			return err
		}
		s := ans.Serial
		if s.BrandID != d.Model.HeaderString("brand-id") || s.Model != d.Model.HeaderString("model") ||
			!s.DeviceKey.Equal(d.Key.Public()) {
			return fmt.Errorf("obtained serial assertion does not match the device (brand, model or key)")
		}
		res.Serial, res.Raw = s, data
		return nil
	}
}

// postRetrying posts until the answer is not transient (a network error or
// a status above 500), waiting as snapd does in between.
func (d *Device) postRetrying(ctx context.Context, res *Result, what string, body []byte, contentType string) ([]byte, int, error) {
	for {
		data, status, err := d.post(ctx, what, body, contentType)
		var te errTransient
		if !errors.As(err, &te) {
			return data, status, err
		}
		res.Retries++
		if err := d.wait(ctx, d.transientWait(te)); err != nil {
			return nil, 0, err
		}
	}
}

func (d *Device) transientWait(te errTransient) time.Duration {
	if te.noNetwork {
		return d.NoNetworkWait
	}
	return d.RetryWait
}
