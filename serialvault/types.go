package serialvault

import (
	"fmt"
	"regexp"
	"time"
)

var (
	modelNamePattern    = regexp.MustCompile(`^[a-z0-9](?:-?[a-z0-9])*$`)
	strictSerialPattern = regexp.MustCompile(`^[a-zA-Z0-9](?:[:+-]?[a-zA-Z0-9])*$`)
)

// ValidSerial reports whether s has snapd's strict serial form, which the
// station enforces for the serials it proposes or assigns.
func ValidSerial(s string) bool { return len(s) <= 256 && strictSerialPattern.MatchString(s) }

func wantType(a *Assertion, typ string) error {
	if a.Type() != typ {
		return formatErr("want a %s assertion, got %s", typ, a.Type())
	}
	return nil
}

func required(a *Assertion, names ...string) error {
	for _, n := range names {
		if a.HeaderString(n) == "" {
			return formatErr("%s: header %s missing or not a string", a.Type(), n)
		}
	}
	return nil
}

func parseTimestamp(a *Assertion, name string) (time.Time, error) {
	s := a.HeaderString(name)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, formatErr("%s: %s %q is not an RFC 3339 time", a.Type(), name, s)
	}
	return t, nil
}

// deviceKey decodes the device-key header.
func deviceKey(a *Assertion) (*PublicKey, error) {
	k, err := DecodePublicKey([]byte(a.HeaderString("device-key")))
	if err != nil {
		return nil, formatErr("%s: device-key: %v", a.Type(), err)
	}
	return k, nil
}

// Serial is the typed view of a serial assertion.
type Serial struct {
	*Assertion
	BrandID     string
	Model       string
	Serial      string
	DeviceKey   *PublicKey
	DeviceKeyID string
	Timestamp   time.Time
}

// AsSerial checks a serial assertion's headers and returns its typed view.
// It does not check the signature.
func AsSerial(a *Assertion) (*Serial, error) {
	if err := wantType(a, "serial"); err != nil {
		return nil, err
	}
	if err := required(a, "authority-id", "brand-id", "model", "serial", "device-key", "device-key-sha3-384", "timestamp"); err != nil {
		return nil, err
	}
	k, err := deviceKey(a)
	if err != nil {
		return nil, err
	}
	if id := a.HeaderString("device-key-sha3-384"); id != k.ID() {
		return nil, formatErr("serial: device-key-sha3-384 %s does not match the device key (%s)", short(id), short(k.ID()))
	}
	ts, err := parseTimestamp(a, "timestamp")
	if err != nil {
		return nil, err
	}
	return &Serial{Assertion: a, BrandID: a.HeaderString("brand-id"), Model: a.HeaderString("model"),
		Serial: a.HeaderString("serial"), DeviceKey: k, DeviceKeyID: k.ID(), Timestamp: ts}, nil
}

// SerialRequest is the typed view of a serial-request assertion.
type SerialRequest struct {
	*Assertion
	BrandID   string
	Model     string
	RequestID string
	Serial    string // proposed serial; may be empty (see ProposedSerial)
	DeviceKey *PublicKey
}

// AsSerialRequest checks a serial-request's headers and its
// self-signature (by its own device key).
func AsSerialRequest(a *Assertion) (*SerialRequest, error) {
	if err := wantType(a, "serial-request"); err != nil {
		return nil, err
	}
	if err := required(a, "brand-id", "model", "request-id", "device-key"); err != nil {
		return nil, err
	}
	if a.AuthorityID() != "" {
		return nil, formatErr("serial-request: unexpected authority-id")
	}
	k, err := deviceKey(a)
	if err != nil {
		return nil, err
	}
	if err := Verify(a, k); err != nil {
		return nil, fmt.Errorf("serial-request is not self-signed by its device key: %w", err)
	}
	return &SerialRequest{Assertion: a, BrandID: a.HeaderString("brand-id"), Model: a.HeaderString("model"),
		RequestID: a.HeaderString("request-id"), Serial: a.HeaderString("serial"), DeviceKey: k}, nil
}

// NewSerialRequest builds and signs a serial-request with the device key,
// as snapd does on first boot.
func NewSerialRequest(key *PrivateKey, brandID, model, requestID, serial string, body []byte, now time.Time) (*Assertion, error) {
	h := map[string]any{
		"type":       "serial-request",
		"brand-id":   brandID,
		"model":      model,
		"request-id": requestID,
		"device-key": key.Public().Encode(),
	}
	if serial != "" {
		h["serial"] = serial
	}
	return Sign(h, body, key, now)
}

// ModelSnap is one entry of a UC20+ model's snaps header.
type ModelSnap struct {
	Name           string
	ID             string
	Type           string
	DefaultChannel string
	Presence       string
	Modes          []string
}

// Model is the typed view of a model assertion, UC16/18 or UC20+ style.
type Model struct {
	*Assertion
	BrandID       string
	Model         string
	Series        string
	Architecture  string
	Base          string
	Grade         string // UC20+: secured, signed or dangerous
	Gadget        string
	Kernel        string
	Store         string
	DisplayName   string
	Classic       bool
	RequiredSnaps []string    // UC16/18 style
	Snaps         []ModelSnap // UC20+ style
	Timestamp     time.Time
}

// UC20 reports whether the model is UC20+ style (has a snaps header).
func (m *Model) UC20() bool { return len(m.Snaps) > 0 }

// AsModel checks a model assertion's headers and returns its typed view.
// It does not check the signature.
func AsModel(a *Assertion) (*Model, error) {
	if err := wantType(a, "model"); err != nil {
		return nil, err
	}
	if err := required(a, "authority-id", "series", "brand-id", "model", "timestamp"); err != nil {
		return nil, err
	}
	m := &Model{Assertion: a, BrandID: a.HeaderString("brand-id"), Model: a.HeaderString("model"),
		Series: a.HeaderString("series"), Architecture: a.HeaderString("architecture"), Base: a.HeaderString("base"),
		Grade: a.HeaderString("grade"), Gadget: a.HeaderString("gadget"), Kernel: a.HeaderString("kernel"),
		Store: a.HeaderString("store"), DisplayName: a.HeaderString("display-name"), Classic: a.HeaderString("classic") == "true"}
	if m.Series != "16" {
		return nil, formatErr("model: series %q, want 16", m.Series)
	}
	if a.AuthorityID() != m.BrandID {
		return nil, formatErr("model: authority-id %q differs from brand-id %q", a.AuthorityID(), m.BrandID)
	}
	if !modelNamePattern.MatchString(m.Model) {
		return nil, formatErr("model: invalid model name %q", m.Model)
	}
	var err error
	if m.Timestamp, err = parseTimestamp(a, "timestamp"); err != nil {
		return nil, err
	}
	if v := a.Header("required-snaps"); v != nil {
		l, ok := v.([]any)
		if !ok {
			return nil, formatErr("model: required-snaps must be a list")
		}
		for _, e := range l {
			s, ok := e.(string)
			if !ok {
				return nil, formatErr("model: required-snaps entries must be names")
			}
			m.RequiredSnaps = append(m.RequiredSnaps, s)
		}
	}
	if v := a.Header("snaps"); v != nil {
		l, ok := v.([]any)
		if !ok {
			return nil, formatErr("model: snaps must be a list")
		}
		for i, e := range l {
			em, ok := e.(map[string]any)
			if !ok {
				return nil, formatErr("model: snaps entry %d must be a map", i+1)
			}
			str := func(k string) string { s, _ := em[k].(string); return s }
			s := ModelSnap{Name: str("name"), ID: str("id"), Type: str("type"), DefaultChannel: str("default-channel"), Presence: str("presence")}
			if s.Name == "" {
				return nil, formatErr("model: snaps entry %d has no name", i+1)
			}
			if modes, ok := em["modes"].([]any); ok {
				for _, md := range modes {
					if ms, ok := md.(string); ok {
						s.Modes = append(s.Modes, ms)
					}
				}
			}
			switch s.Type {
			case "gadget":
				m.Gadget = s.Name
			case "kernel":
				m.Kernel = s.Name
			}
			m.Snaps = append(m.Snaps, s)
		}
		if m.Grade == "" {
			m.Grade = "signed"
		}
	}
	if !m.Classic && (m.Gadget == "" || m.Kernel == "") {
		return nil, formatErr("model: an Ubuntu Core model needs a gadget and a kernel")
	}
	return m, nil
}

// AccountKey is the typed view of an account-key assertion.
type AccountKey struct {
	*Assertion
	AccountID string
	Name      string
	Since     time.Time
	Until     time.Time // zero: no end
	PublicKey *PublicKey
}

// AsAccountKey checks an account-key's headers and that its body is the key
// its public-key-sha3-384 names. It does not check the signature.
func AsAccountKey(a *Assertion) (*AccountKey, error) {
	if err := wantType(a, "account-key"); err != nil {
		return nil, err
	}
	if err := required(a, "authority-id", "account-id", "name", "since", "public-key-sha3-384"); err != nil {
		return nil, err
	}
	k, err := DecodePublicKey(a.Body())
	if err != nil {
		return nil, formatErr("account-key: body: %v", err)
	}
	if id := a.HeaderString("public-key-sha3-384"); id != k.ID() {
		return nil, formatErr("account-key: public-key-sha3-384 %s does not match the key in the body (%s)", short(id), short(k.ID()))
	}
	ak := &AccountKey{Assertion: a, AccountID: a.HeaderString("account-id"), Name: a.HeaderString("name"), PublicKey: k}
	if ak.Since, err = parseTimestamp(a, "since"); err != nil {
		return nil, err
	}
	if a.HeaderString("until") != "" {
		if ak.Until, err = parseTimestamp(a, "until"); err != nil {
			return nil, err
		}
	}
	return ak, nil
}
