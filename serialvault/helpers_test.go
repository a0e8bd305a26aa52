package serialvault_test

import (
	"sync"
	"testing"
	"time"

	"github.com/flashstation/flashstation/secret"
	"github.com/flashstation/flashstation/serialvault"
)

var fixedNow = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

var (
	keyOnce sync.Once
	keys    []*serialvault.PrivateKey
)

// testKeys are shared generated 2048-bit keys (4096 only where a test says
// so) to keep the suite fast.
func testKeyN(t testing.TB, i int) *serialvault.PrivateKey {
	t.Helper()
	keyOnce.Do(func() {
		for range 4 {
			k, err := serialvault.GenerateKey(2048)
			if err != nil {
				panic(err)
			}
			keys = append(keys, k)
		}
	})
	return keys[i]
}

func testKey(t testing.TB) *serialvault.PrivateKey { return testKeyN(t, 0) }

func secretNew(s string) secret.Value { return secret.New(s) }
