package vaulttest

import (
	"sync"

	"github.com/flashstation/flashstation/serialvault"
)

var (
	testKeysOnce sync.Once
	testKeys     []*serialvault.PrivateKey
)

// TestKey returns one of four 2048-bit keys generated once per process, so
// tests can share keys instead of paying for RSA generation each time
// (real brand and device keys are 4096 bits). i is taken modulo 4.
func TestKey(i int) *serialvault.PrivateKey {
	testKeysOnce.Do(func() {
		for range 4 {
			k, err := serialvault.GenerateKey(2048)
			if err != nil {
				panic(err)
			}
			testKeys = append(testKeys, k)
		}
	})
	return testKeys[i%4]
}
