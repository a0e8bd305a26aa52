package serialvault

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of one assertion, as snapd enforces them.
const (
	MaxHeadersSize   = 128 << 10
	MaxBodySize      = 2 << 20
	MaxSignatureSize = 128 << 10
)

// ErrFormat wraps every decoding error.
var ErrFormat = errors.New("invalid assertion")

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// Assertion is one decoded (or freshly signed) assertion: ordered headers,
// an optional body and the signature over the content.
type Assertion struct {
	headers   []Header
	index     map[string]int
	body      []byte
	signature []byte // 0x01 followed by an OpenPGP signature packet
	// content is the signed bytes exactly as decoded; nil for an assertion
	// built by Sign, whose content is its canonical encoding.
	content []byte
}

// Headers returns the headers in their order.
func (a *Assertion) Headers() []Header { return append([]Header(nil), a.headers...) }

// Header returns a header's value (string, []any or map[string]any) or nil.
func (a *Assertion) Header(name string) any {
	if i, ok := a.index[name]; ok {
		return a.headers[i].Value
	}
	return nil
}

// HeaderString returns a string header, or "" when it is missing or not a
// string.
func (a *Assertion) HeaderString(name string) string {
	s, _ := a.Header(name).(string)
	return s
}

// Type is the assertion type, e.g. "serial".
func (a *Assertion) Type() string { return a.HeaderString("type") }

// SignKeyID is the SHA3-384 id of the key that signed the assertion.
func (a *Assertion) SignKeyID() string { return a.HeaderString("sign-key-sha3-384") }

// AuthorityID is the account that signed the assertion ("" for
// self-signed types such as serial-request).
func (a *Assertion) AuthorityID() string { return a.HeaderString("authority-id") }

// Revision is the assertion's revision (0 when absent).
func (a *Assertion) Revision() int {
	n, _ := strconv.Atoi(a.HeaderString("revision"))
	return n
}

// Body returns the body (nil when there is none).
func (a *Assertion) Body() []byte { return a.body }

// Signature returns the raw signature: 0x01 followed by the OpenPGP packet.
func (a *Assertion) Signature() []byte { return a.signature }

// Content returns the signed bytes: the headers, plus a blank line and the
// body when there is one, exactly as received for a decoded assertion.
func (a *Assertion) Content() []byte {
	if a.content != nil {
		return a.content
	}
	return a.canonicalContent()
}

// Canonical reports whether the assertion is written exactly as the format
// encodes it (header layout, map key order, signature wrapping), as snapd
// and the vault write them. Non-canonical assertions still verify: the
// signature covers the bytes as received.
func (a *Assertion) Canonical() bool {
	return a.content == nil || bytes.Equal(a.content, a.canonicalContent())
}

func (a *Assertion) canonicalContent() []byte {
	var b strings.Builder
	for _, h := range a.headers {
		// Values were checked when the assertion was built or decoded.
		_ = appendHeader(&b, h.Name+":", h.Value, 0)
	}
	s := strings.TrimSuffix(b.String(), "\n")
	if len(a.body) > 0 {
		s += "\n\n" + string(a.body)
	}
	return []byte(s)
}

// Encode returns the assertion in its wire form, ending with a newline.
func (a *Assertion) Encode() []byte {
	var b bytes.Buffer
	b.Write(a.Content())
	b.WriteString("\n\n")
	b.WriteString(wrap76(base64Std(a.signature)))
	b.WriteByte('\n')
	return b.Bytes()
}

// String returns a short description, e.g. "serial acme/acme-gw-armhf/LINE1-000200".
func (a *Assertion) String() string {
	var keys []string
	for _, k := range primaryKeys[a.Type()] {
		keys = append(keys, a.HeaderString(k))
	}
	if len(keys) == 0 {
		return a.Type()
	}
	return a.Type() + " " + strings.Join(keys, "/")
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func wrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76])
		b.WriteByte('\n')
		s = s[76:]
	}
	b.WriteString(s)
	return b.String()
}

var intPattern = regexp.MustCompile(`^(0|[1-9][0-9]{0,9})$`)

// Decode decodes exactly one assertion; a trailing newline is allowed.
func Decode(data []byte) (*Assertion, error) {
	d := NewDecoder(bytes.NewReader(data))
	a, err := d.Decode()
	if err == io.EOF {
		return nil, formatErr("empty input")
	}
	if err != nil {
		return nil, err
	}
	if _, err := d.Decode(); err != io.EOF {
		if err == nil {
			return nil, formatErr("more than one assertion")
		}
		return nil, err
	}
	return a, nil
}

// DecodeStream decodes every assertion of a stream (assertions separated by
// one empty line, as in application/x.ubuntu.assertion bodies).
func DecodeStream(data []byte) ([]*Assertion, error) {
	d := NewDecoder(bytes.NewReader(data))
	var out []*Assertion
	for {
		a, err := d.Decode()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("assertion %d: %w", len(out)+1, err)
		}
		out = append(out, a)
	}
}

// Decoder reads assertions one by one from a stream. It finds the end of a
// body by its body-length header (a body may hold blank lines) and enforces
// the size limits while reading.
type Decoder struct {
	r *bufio.Reader
}

// NewDecoder returns a decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 64<<10)}
}

// readUntilBlank reads up to and including the next "\n\n", or to EOF. It
// returns the data without the terminator, whether the terminator was
// found, and fails beyond max bytes.
func (d *Decoder) readUntilBlank(max int, what string) ([]byte, bool, error) {
	var buf []byte
	for {
		line, err := d.r.ReadSlice('\n')
		buf = append(buf, line...)
		if len(buf) > max+2 {
			return nil, false, formatErr("%s larger than %d bytes", what, max)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return buf, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if bytes.HasSuffix(buf, []byte("\n\n")) {
			return buf[:len(buf)-2], true, nil
		}
	}
}

// Decode returns the next assertion, or io.EOF at the end of the stream.
func (d *Decoder) Decode() (*Assertion, error) {
	// Extra blank lines between assertions are tolerated.
	for {
		b, err := d.r.Peek(1)
		if err == io.EOF || len(b) == 0 {
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
		if b[0] != '\n' {
			break
		}
		_, _ = d.r.ReadByte()
	}
	headText, found, err := d.readUntilBlank(MaxHeadersSize, "headers")
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, formatErr("no blank line after the headers")
	}
	a, err := newFromHeaderText(headText)
	if err != nil {
		return nil, err
	}
	if n := bodyLength(a); n > 0 {
		body := make([]byte, n+2)
		if _, err := io.ReadFull(d.r, body); err != nil {
			return nil, formatErr("body shorter than body-length %d", n)
		}
		if !bytes.HasSuffix(body, []byte("\n\n")) {
			return nil, formatErr("body does not end where body-length %d says", n)
		}
		a.body = body[:n]
		if !utf8.Valid(a.body) {
			return nil, formatErr("body is not valid UTF-8")
		}
	}
	sigText, _, err := d.readUntilBlank(MaxSignatureSize*4/3+MaxSignatureSize/57+4, "signature")
	if err != nil {
		return nil, err
	}
	sigText = bytes.TrimSuffix(sigText, []byte("\n"))
	if len(sigText) == 0 {
		return nil, formatErr("missing signature")
	}
	sig, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(sigText), "\n", ""))
	if err != nil {
		return nil, formatErr("signature is not base64: %v", err)
	}
	if len(sig) > MaxSignatureSize {
		return nil, formatErr("signature larger than %d bytes", MaxSignatureSize)
	}
	if len(sig) < 2 || sig[0] != 0x01 {
		return nil, formatErr("unknown signature format")
	}
	a.signature = sig
	a.content = append([]byte(nil), headText...)
	if len(a.body) > 0 {
		a.content = append(append(a.content, "\n\n"...), a.body...)
	}
	return a, nil
}

// newFromHeaderText parses and checks the header section.
func newFromHeaderText(text []byte) (*Assertion, error) {
	if !utf8.Valid(text) {
		return nil, formatErr("headers are not valid UTF-8")
	}
	if bytes.IndexByte(text, '\r') >= 0 {
		return nil, formatErr("headers contain a carriage return")
	}
	hs, err := parseHeaders(string(text))
	if err != nil {
		return nil, formatErr("%v", err)
	}
	a := &Assertion{headers: hs, index: make(map[string]int, len(hs))}
	for i, h := range hs {
		a.index[h.Name] = i
	}
	if err := checkCommonHeaders(a); err != nil {
		return nil, err
	}
	return a, nil
}

func bodyLength(a *Assertion) int {
	n, _ := strconv.Atoi(a.HeaderString("body-length"))
	return n
}

// checkCommonHeaders checks what every assertion must hold.
func checkCommonHeaders(a *Assertion) error {
	typ, ok := a.Header("type").(string)
	if !ok || typ == "" {
		return formatErr("type header missing")
	}
	if !headerNamePattern.MatchString(typ) {
		return formatErr("invalid type %q", truncate(typ))
	}
	if a.SignKeyID() == "" {
		return formatErr("sign-key-sha3-384 header missing")
	}
	for _, name := range []string{"revision", "format", "body-length"} {
		v := a.Header(name)
		if v == nil {
			continue
		}
		s, ok := v.(string)
		if !ok || !intPattern.MatchString(s) {
			return formatErr("%s must be a non-negative integer", name)
		}
	}
	if n := bodyLength(a); n > MaxBodySize {
		return formatErr("body-length %d exceeds %d", n, MaxBodySize)
	}
	for _, k := range primaryKeys[typ] {
		v, ok := a.Header(k).(string)
		if !ok || v == "" {
			return formatErr("%s: primary key %s missing", typ, k)
		}
		if strings.Contains(v, "/") {
			return formatErr("%s: primary key %s must not contain '/'", typ, k)
		}
	}
	return nil
}
