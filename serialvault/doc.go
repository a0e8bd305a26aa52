// Package serialvault speaks the Ubuntu Core Serial Vault protocol.
//
// It owns the assertion codec (decoding, encoding, signing and verifying),
// the vault client, and the per-line recording proxy that writes every serial
// assertion to the ledger before the device sees it. The faithful vault
// double lives in the sibling package serialvault/vaulttest.
//
// The codec and client land with the Serial Vault issue; this package
// currently holds only its documentation so that the layout is fixed.
package serialvault
