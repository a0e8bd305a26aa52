// Package record holds the ledger's records that travel outside it (the
// spool, the recording proxy) without its database: a program that only
// makes or carries records, such as a simulated board, does not link
// SQLite.
package record

import "time"

// Ways a serial assertion reaches the station.
const (
	ViaProxy   = "proxy"
	ViaConsole = "console"
	ViaImport  = "import"
)

// SerialAssertion is a captured serial assertion and what the station knew
// when it arrived. The caller has verified Text; the ledger keeps it
// byte for byte.
type SerialAssertion struct {
	ID          int64
	Text        []byte
	BrandID     string
	Model       string
	Serial      string
	Revision    int
	DeviceKeyID string // SHA3-384 id of the device key
	LineID      string
	UnitID      int64  // 0 when it matched no unit
	Via         string // ViaProxy, ViaConsole or ViaImport
	Duplicate   bool   // the vault had signed this serial or device key before
	ReceivedAt  time.Time
	// StationID is the bench that recorded it, and Seq its place in that
	// bench's hash chain (its id there); set by the ledger when read.
	StationID string
	Seq       int64
}
