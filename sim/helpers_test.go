package sim_test

import (
	"github.com/flashstation/flashstation/secret"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

func secretOf(s string) secret.Value { return secret.New(s) }

func keyOf(i int) *serialvault.PrivateKey { return vaulttest.TestKey(i) }
