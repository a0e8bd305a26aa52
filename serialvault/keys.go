package serialvault

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha3"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// MinKeyBits is the smallest RSA key a verifier accepts.
const MinKeyBits = 2048

// keyCreationTime is the fixed creation time of encoded public keys: their
// bytes, and so their ids, depend only on the RSA key.
var keyCreationTime = time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC)

// PublicKey is an RSA public key in the assertion world: encoded as 0x01
// followed by an OpenPGP v4 public-key packet, named by the SHA3-384 of
// those bytes.
type PublicKey struct {
	pkt     *packet.PublicKey
	rsa     *rsa.PublicKey
	encoded []byte // 0x01 + packet
	id      string
}

// NewPublicKey wraps an RSA public key.
func NewPublicKey(pub *rsa.PublicKey) (*PublicKey, error) {
	pkt := packet.NewRSAPublicKey(keyCreationTime, pub)
	var b bytes.Buffer
	b.WriteByte(0x01)
	if err := pkt.Serialize(&b); err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return &PublicKey{pkt: pkt, rsa: pub, encoded: b.Bytes(), id: keyID(b.Bytes())}, nil
}

func keyID(encoded []byte) string {
	sum := sha3.Sum384(encoded)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// DecodePublicKey decodes an encoded public key: base64 text (line breaks
// and indentation allowed) of 0x01 followed by an OpenPGP RSA public-key
// packet.
func DecodePublicKey(text []byte) (*PublicKey, error) {
	clean := strings.Join(strings.Fields(string(text)), "")
	raw, err := base64.StdEncoding.DecodeString(clean)
	if err != nil {
		return nil, fmt.Errorf("public key is not base64: %w", err)
	}
	return parsePublicKey(raw)
}

func parsePublicKey(raw []byte) (*PublicKey, error) {
	if len(raw) < 2 || raw[0] != 0x01 {
		return nil, fmt.Errorf("unknown public key format")
	}
	r := bytes.NewReader(raw[1:])
	p, err := packet.Read(r)
	if err != nil {
		return nil, fmt.Errorf("public key packet: %w", err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("public key: %d bytes after the packet", r.Len())
	}
	pkt, ok := p.(*packet.PublicKey)
	if !ok || pkt.IsSubkey {
		return nil, fmt.Errorf("not a public key packet")
	}
	pub, ok := pkt.PublicKey.(*rsa.PublicKey)
	if !ok || pkt.PubKeyAlgo != packet.PubKeyAlgoRSA {
		return nil, fmt.Errorf("not an RSA key")
	}
	if pub.N.BitLen() < MinKeyBits {
		return nil, fmt.Errorf("RSA key of %d bits is too small (want at least %d)", pub.N.BitLen(), MinKeyBits)
	}
	return &PublicKey{pkt: pkt, rsa: pub, encoded: raw, id: keyID(raw)}, nil
}

// ID is the key's SHA3-384 id, base64url without padding (64 characters).
func (k *PublicKey) ID() string { return k.id }

// Bits is the RSA modulus size.
func (k *PublicKey) Bits() int { return k.rsa.N.BitLen() }

// RSA returns the RSA key.
func (k *PublicKey) RSA() *rsa.PublicKey { return k.rsa }

// Encode returns the encoded key, base64 wrapped at 76 columns (the form of
// a device-key header or an account-key body).
func (k *PublicKey) Encode() string {
	return wrap76(base64.StdEncoding.EncodeToString(k.encoded))
}

// Equal reports whether two keys are the same.
func (k *PublicKey) Equal(o *PublicKey) bool { return o != nil && k.id == o.id }

// PrivateKey is an RSA signing key: a brand's, the vault's or a device's.
type PrivateKey struct {
	rsa *rsa.PrivateKey
	pub *PublicKey
}

// GenerateKey makes a new RSA key. Brand and device keys are 4096 bits;
// smaller keys (at least 2048) only for fast tests.
func GenerateKey(bits int) (*PrivateKey, error) {
	if bits < MinKeyBits {
		return nil, fmt.Errorf("key size %d is below %d bits", bits, MinKeyBits)
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return NewPrivateKey(k)
}

// NewPrivateKey wraps an RSA private key.
func NewPrivateKey(k *rsa.PrivateKey) (*PrivateKey, error) {
	if k.N.BitLen() < MinKeyBits {
		return nil, fmt.Errorf("key size %d is below %d bits", k.N.BitLen(), MinKeyBits)
	}
	pub, err := NewPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	return &PrivateKey{rsa: k, pub: pub}, nil
}

// Public returns the public half.
func (k *PrivateKey) Public() *PublicKey { return k.pub }

// MarshalPEM returns the key as a PKCS#8 PEM block.
func (k *PrivateKey) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.rsa)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM reads an RSA key from a PKCS#8 or PKCS#1 PEM block.
func ParsePrivateKeyPEM(data []byte) (*PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var k *rsa.PrivateKey
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		var ok bool
		if k, ok = parsed.(*rsa.PrivateKey); !ok {
			return nil, errors.New("not an RSA private key")
		}
	case "RSA PRIVATE KEY":
		var err error
		if k, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	return NewPrivateKey(k)
}

// LoadOrCreateKey reads a PEM key file, or generates a key of the given
// size and writes it there (mode 0600) when the file does not exist.
func LoadOrCreateKey(path string, bits int) (k *PrivateKey, created bool, err error) {
	data, err := os.ReadFile(path)
	if err == nil {
		k, err := ParsePrivateKeyPEM(data)
		if err != nil {
			return nil, false, fmt.Errorf("key file %s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("read key: %w", err)
	}
	if k, err = GenerateKey(bits); err != nil {
		return nil, false, err
	}
	pemBytes, err := k.MarshalPEM()
	if err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(pemBytes); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("write key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("write key: %w", err)
	}
	return k, true, f.Close()
}
