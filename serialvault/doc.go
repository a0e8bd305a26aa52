// Package serialvault speaks the Ubuntu Core Serial Vault protocol.
//
// It owns the assertion codec (decoding single assertions and streams,
// encoding in signing order, OpenPGP v4 RSA/SHA-512 signatures, encoded
// public keys and their SHA3-384 ids), typed views of the model, serial,
// serial-request and account-key assertions, the vault client, and the
// per-line recording proxy that writes every serial assertion to the ledger
// before the device sees it. The faithful vault double lives in the sibling
// package serialvault/vaulttest.
//
// Written from ../shared/spec/assertions.md and serial-vault.md; no code
// from snapd or serial-vault (both GPL) is used.
package serialvault
