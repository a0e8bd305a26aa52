package serialvault

import (
	"bytes"
	"fmt"
	"os"
	"sort"
)

// TrustedKey is a key the station trusts to sign for an account.
type TrustedKey struct {
	Key *PublicKey
	// AccountID is the account the key signs for, from its account-key
	// assertion; empty for a bare encoded key, which may sign for any
	// authority the caller accepts.
	AccountID string
	Name      string
	Source    string // where it came from, for messages
}

// KeyRing is a set of trusted keys, looked up by SHA3-384 id.
type KeyRing struct {
	keys map[string]TrustedKey
}

// NewKeyRing returns an empty key ring.
func NewKeyRing() *KeyRing { return &KeyRing{keys: map[string]TrustedKey{}} }

// Add trusts a key.
func (r *KeyRing) Add(k TrustedKey) { r.keys[k.Key.ID()] = k }

// Len is the number of keys.
func (r *KeyRing) Len() int { return len(r.keys) }

// IDs returns the key ids, sorted.
func (r *KeyRing) IDs() []string {
	ids := make([]string, 0, len(r.keys))
	for id := range r.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Lookup returns the trusted key with the given id.
func (r *KeyRing) Lookup(id string) (TrustedKey, bool) {
	k, ok := r.keys[id]
	return k, ok
}

// Verify checks an assertion's signature against the trusted key it names,
// and that the key signs for the assertion's authority.
func (r *KeyRing) Verify(a *Assertion) (TrustedKey, error) {
	k, ok := r.keys[a.SignKeyID()]
	if !ok {
		return TrustedKey{}, fmt.Errorf("%w: %s is signed by key %s, which is not trusted", ErrSignature, a, short(a.SignKeyID()))
	}
	if k.AccountID != "" && a.AuthorityID() != "" && k.AccountID != a.AuthorityID() {
		return k, fmt.Errorf("%w: %s has authority %q but key %s belongs to account %q",
			ErrSignature, a, a.AuthorityID(), short(k.Key.ID()), k.AccountID)
	}
	return k, Verify(a, k.Key)
}

// AddFile trusts the keys in a file: account-key assertions (one or a
// stream) or an encoded public key.
func (r *KeyRing) AddFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read trusted key: %w", err)
	}
	return r.AddData(path, data)
}

// AddData trusts the keys in data (see AddFile); source names it in
// messages.
func (r *KeyRing) AddData(source string, data []byte) error {
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("type:")) {
		as, err := DecodeStream(data)
		if err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		n := 0
		for _, a := range as {
			if a.Type() != "account-key" {
				continue
			}
			ak, err := AsAccountKey(a)
			if err != nil {
				return fmt.Errorf("%s: %w", source, err)
			}
			r.Add(TrustedKey{Key: ak.PublicKey, AccountID: ak.AccountID, Name: ak.Name, Source: source})
			n++
		}
		if n == 0 {
			return fmt.Errorf("%s: no account-key assertion in the file", source)
		}
		return nil
	}
	k, err := DecodePublicKey(data)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	r.Add(TrustedKey{Key: k, Source: source})
	return nil
}
