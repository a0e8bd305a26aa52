package serialvault

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// ErrSignature wraps every signature verification failure.
var ErrSignature = errors.New("signature check failed")

// primaryKeys are the primary-key headers of the types the station knows,
// in declared order.
var primaryKeys = map[string][]string{
	"account":        {"account-id"},
	"account-key":    {"public-key-sha3-384"},
	"model":          {"series", "brand-id", "model"},
	"serial":         {"brand-id", "model", "serial"},
	"serial-request": nil,
}

// noAuthority lists the self-signed types, which have no authority-id.
var noAuthority = map[string]bool{"serial-request": true, "device-session-request": true}

// Sign builds and signs an assertion. headers holds every header except
// sign-key-sha3-384 and body-length, which Sign sets; values are strings,
// []string, []any or map[string]any; ints are written in decimal. Headers
// are written in signing order: type, format, authority-id, revision, the
// type's primary keys, the others sorted, body-length, sign-key-sha3-384.
func Sign(headers map[string]any, body []byte, key *PrivateKey, now time.Time) (*Assertion, error) {
	typ, _ := headers["type"].(string)
	if typ == "" {
		return nil, fmt.Errorf("sign: type header missing")
	}
	hs := map[string]any{}
	for name, v := range headers {
		if name == "sign-key-sha3-384" || name == "body-length" {
			return nil, fmt.Errorf("sign: %s is set by Sign", name)
		}
		if !headerNamePattern.MatchString(name) {
			return nil, fmt.Errorf("sign: invalid header name %q", name)
		}
		if i, ok := v.(int); ok {
			v = strconv.Itoa(i)
		}
		if isEmptyValue(v) {
			continue
		}
		hs[name] = v
	}
	var ordered []Header
	take := func(name string) {
		if v, ok := hs[name]; ok {
			ordered = append(ordered, Header{Name: name, Value: v})
			delete(hs, name)
		}
	}
	take("type")
	if hs["format"] == "0" {
		delete(hs, "format")
	}
	take("format")
	if noAuthority[typ] {
		if _, ok := hs["authority-id"]; ok {
			return nil, fmt.Errorf("sign: %s assertions have no authority-id", typ)
		}
	} else {
		take("authority-id")
	}
	if hs["revision"] == "0" {
		delete(hs, "revision")
	}
	take("revision")
	for _, k := range primaryKeys[typ] {
		take(k)
	}
	rest := make([]string, 0, len(hs))
	for k := range hs {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	for _, k := range rest {
		take(k)
	}
	if len(body) > 0 {
		ordered = append(ordered, Header{Name: "body-length", Value: strconv.Itoa(len(body))})
	}
	ordered = append(ordered, Header{Name: "sign-key-sha3-384", Value: key.Public().ID()})

	a := &Assertion{headers: ordered, index: map[string]int{}, body: append([]byte(nil), body...)}
	for i, h := range ordered {
		a.index[h.Name] = i
	}
	if err := checkCommonHeaders(a); err != nil {
		return nil, err
	}
	if len(body) > MaxBodySize {
		return nil, fmt.Errorf("sign: body larger than %d bytes", MaxBodySize)
	}
	sig, err := signContent(a.Content(), key, now)
	if err != nil {
		return nil, err
	}
	a.signature = sig
	return a, nil
}

// signContent makes the signature: 0x01 followed by an OpenPGP v4 binary
// signature packet (RSA, SHA-512) whose only subpacket is the hashed
// creation time, the form snapd and the Serial Vault produce.
func signContent(content []byte, key *PrivateKey, now time.Time) ([]byte, error) {
	if now.IsZero() {
		now = time.Now()
	}
	hashed := []byte{5, 2, 0, 0, 0, 0} // subpacket: length 5, type 2 (creation time)
	binary.BigEndian.PutUint32(hashed[2:], uint32(now.Unix()))
	head := []byte{4, 0x00, byte(packet.PubKeyAlgoRSA), 10 /* SHA-512 */, 0, byte(len(hashed))}
	head = append(head, hashed...)
	trailer := []byte{4, 0xff, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(trailer[2:], uint32(len(head)))

	h := sha512.New()
	h.Write(content)
	h.Write(head)
	h.Write(trailer)
	digest := h.Sum(nil)
	s, err := rsa.SignPKCS1v15(rand.Reader, key.rsa, crypto.SHA512, digest)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	mpi := new(big.Int).SetBytes(s)
	sBytes := mpi.Bytes()

	var body bytes.Buffer
	body.Write(head)
	body.Write([]byte{0, 0}) // no unhashed subpackets
	body.Write(digest[:2])
	_ = binary.Write(&body, binary.BigEndian, uint16(mpi.BitLen()))
	body.Write(sBytes)

	var out bytes.Buffer
	out.WriteByte(0x01)
	out.WriteByte(0xc0 | 2) // new-format packet, tag 2: signature
	writeNewLength(&out, body.Len())
	out.Write(body.Bytes())
	return out.Bytes(), nil
}

func writeNewLength(b *bytes.Buffer, n int) {
	switch {
	case n < 192:
		b.WriteByte(byte(n))
	case n < 8384:
		n -= 192
		b.WriteByte(byte(n>>8) + 192)
		b.WriteByte(byte(n))
	default:
		b.WriteByte(0xff)
		_ = binary.Write(b, binary.BigEndian, uint32(n))
	}
}

// parseSignature reads the OpenPGP packet of an assertion signature and
// checks it is the kind assertions use.
func parseSignature(raw []byte) (*packet.Signature, error) {
	if len(raw) < 2 || raw[0] != 0x01 {
		return nil, fmt.Errorf("%w: unknown signature format", ErrSignature)
	}
	r := bytes.NewReader(raw[1:])
	p, err := packet.Read(r)
	if err != nil {
		return nil, fmt.Errorf("%w: signature packet: %v", ErrSignature, err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the signature packet", ErrSignature, r.Len())
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return nil, fmt.Errorf("%w: not a signature packet", ErrSignature)
	}
	switch {
	case sig.Version != 4:
		return nil, fmt.Errorf("%w: signature version %d, want 4", ErrSignature, sig.Version)
	case sig.SigType != packet.SigTypeBinary:
		return nil, fmt.Errorf("%w: signature type %d, want binary", ErrSignature, sig.SigType)
	case sig.PubKeyAlgo != packet.PubKeyAlgoRSA && sig.PubKeyAlgo != packet.PubKeyAlgoRSASignOnly:
		return nil, fmt.Errorf("%w: signature algorithm %d, want RSA", ErrSignature, sig.PubKeyAlgo)
	case sig.Hash != crypto.SHA512:
		return nil, fmt.Errorf("%w: signature hash %v, want SHA-512", ErrSignature, sig.Hash)
	}
	return sig, nil
}

// Verify checks that key signed the assertion: the sign-key-sha3-384 header
// names the key and the signature over the content holds.
func Verify(a *Assertion, key *PublicKey) error {
	if a.SignKeyID() != key.ID() {
		return fmt.Errorf("%w: %s is signed by key %s, not %s", ErrSignature, a, short(a.SignKeyID()), short(key.ID()))
	}
	sig, err := parseSignature(a.signature)
	if err != nil {
		return err
	}
	h := sha512.New()
	h.Write(a.Content())
	if err := key.pkt.VerifySignature(h, sig); err != nil {
		return fmt.Errorf("%w: %s: signature does not match its content (%v)", ErrSignature, a, err)
	}
	return nil
}

// SignatureTime is when the signature was made.
func (a *Assertion) SignatureTime() (time.Time, error) {
	sig, err := parseSignature(a.signature)
	if err != nil {
		return time.Time{}, err
	}
	return sig.CreationTime, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12] + "..."
	}
	return id
}
