package serialvault_test

import (
	"testing"
	"time"

	"github.com/flashstation/flashstation/secret"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

var fixedNow = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// testKeyN returns shared generated 2048-bit keys (see vaulttest.TestKey).
func testKeyN(t testing.TB, i int) *serialvault.PrivateKey { return vaulttest.TestKey(i) }

func testKey(t testing.TB) *serialvault.PrivateKey { return testKeyN(t, 0) }

func secretNew(s string) secret.Value { return secret.New(s) }
