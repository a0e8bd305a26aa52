package lines

import (
	"fmt"
	"os"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/ledger/spool"
	"github.com/flashstation/flashstation/serialvault"
)

// LoadModel reads and checks the line's model assertion.
func (l *Line) LoadModel() (*serialvault.Model, error) {
	m, err := readModel(l.Model)
	if err != nil {
		return nil, fmt.Errorf("line %s: model %s: %w", l.ID, l.Model, err)
	}
	return m, nil
}

func readModel(path string) (*serialvault.Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	a, err := serialvault.Decode(data)
	if err != nil {
		return nil, err
	}
	return serialvault.AsModel(a)
}

// LoadKeyRing reads the line's trusted brand keys.
func (l *Line) LoadKeyRing() (*serialvault.KeyRing, error) {
	ring := serialvault.NewKeyRing()
	for _, f := range l.BrandKeys {
		if err := ring.AddFile(f); err != nil {
			return nil, fmt.Errorf("line %s: brand key: %w", l.ID, err)
		}
	}
	return ring, nil
}

// VaultClient builds a client for the line's vault with the line's api-key.
// attempts is how many times a request is sent (1 for the proxy, which
// lets the device retry).
func (l *Line) VaultClient(attempts int, log zerolog.Logger) (*serialvault.Client, error) {
	key, err := l.Vault.APIKey.Resolve()
	if err != nil {
		return nil, fmt.Errorf("line %s: vault api-key (%s): %w", l.ID, l.Vault.APIKey, err)
	}
	c, err := serialvault.NewClient(l.Vault.URL, serialvault.ClientOptions{
		APIKey: key, CAFile: l.Vault.CAFile, Attempts: attempts, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("line %s: %w", l.ID, err)
	}
	return c, nil
}

// NewLineProxy builds the line's recording proxy: its vault with the line's
// api-key, its trusted brand keys and model, its proxy.allow, spooling
// into sp (may be nil) and recording into rec, forwarding only what
// matches one of windows.
func NewLineProxy(l *Line, rec serialvault.Recorder, sp *spool.Spool, windows *serialvault.Windows, log zerolog.Logger, onCapture func(serialvault.Capture), onRefusal func(serialvault.Refusal)) (*serialvault.Proxy, error) {
	m, err := l.LoadModel()
	if err != nil {
		return nil, err
	}
	ring, err := l.LoadKeyRing()
	if err != nil {
		return nil, err
	}
	allow, err := l.AllowPrefixes()
	if err != nil {
		return nil, err
	}
	client, err := l.VaultClient(1, log)
	if err != nil {
		return nil, err
	}
	return serialvault.NewProxy(serialvault.ProxyConfig{
		LineID: l.ID, BrandID: m.BrandID, Model: m.Model, Keys: ring, Vault: client, Windows: windows, Allow: allow,
		Recorder: rec, Spool: sp, OnCapture: onCapture, OnRefusal: onRefusal, Logger: log,
	})
}
