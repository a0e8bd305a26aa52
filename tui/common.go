package tui

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
)

// Station is what the interface needs of a running station
// (*lines.Pipeline is one).
type Station interface {
	Slots() []lines.SlotView
	Health() []lines.LineHealth
	Retry(slot string) error
	SetDisabled(slot string, disabled bool) error
	EndBatch(line string) error
	// SetOperator names the operator at the bench when the station was
	// started without one.
	SetOperator(name string) error
}

// Records is what the interface reads from the ledger (*ledger.Ledger is
// one).
type Records interface {
	Stats(ctx context.Context, f ledger.StatsFilter) (ledger.Stats, error)
	Units(ctx context.Context, f ledger.UnitFilter) ([]ledger.Unit, error)
	Evidence(ctx context.Context, unitID int64) (ledger.Evidence, error)
	SerialAssertions(ctx context.Context, f ledger.AssertionFilter) ([]ledger.SerialAssertion, error)
}

// Common is what every component shares: the size it may draw in, the
// styles, the keys, the logger, the clock and the station.
type Common struct {
	Ctx           context.Context
	Width, Height int
	Styles        *Styles
	Keys          *KeyMap
	Log           zerolog.Logger
	Now           func() time.Time
	Station       Station
	Records       Records
	// StationID and Operator are shown in the header; ExportDir receives
	// QA bundles.
	StationID string
	Operator  string
	ExportDir string
}
