package lines

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/secret"
	"github.com/flashstation/flashstation/serialvault"
)

// Kinds of disagreement between the ledger and a vault's signing log.
const (
	// The vault signed a serial for a board of this station (its device key
	// or its expected serial) that the ledger does not hold.
	DiffNotInLedger = "not-in-ledger"
	// The ledger holds an assertion the vault's log does not show.
	DiffNotInVault = "not-in-vault"
)

// Difference is one disagreement between the ledger and the vault.
type Difference struct {
	Kind        string    `json:"kind"`
	Serial      string    `json:"serial"`
	DeviceKeyID string    `json:"device_key"`
	Revision    int       `json:"revision"`
	VaultRow    int       `json:"vault_row,omitempty"`    // the signing log's id
	AssertionID int64     `json:"assertion_id,omitempty"` // the ledger's id
	At          time.Time `json:"at"`
	Detail      string    `json:"detail"`
}

// Reconciliation compares one line's ledger assertions with its vault's
// signing log.
type Reconciliation struct {
	Line        string       `json:"line"`
	Since       time.Time    `json:"since,omitzero"`
	VaultRows   int          `json:"vault_rows"`  // rows of the line's brand and model in the period
	LedgerRows  int          `json:"ledger_rows"` // assertions of the line in the period
	Matched     int          `json:"matched"`
	Differences []Difference `json:"differences"`
	// The vault answers only its newest SigningLogWindow rows: when it
	// answered that many, nothing older than WindowFrom can be proved, and
	// NotProvable counts the ledger's assertions older than that.
	Truncated   bool      `json:"truncated"`
	WindowFrom  time.Time `json:"window_from,omitzero"`
	NotProvable int       `json:"not_provable"`
	// Pending counts the vault's rows for boards still in work: signed,
	// and not recorded yet (a console line reads the serial after the
	// board registered), so not a difference yet.
	Pending int `json:"pending"`
}

// OK reports whether the two agree.
func (r Reconciliation) OK() bool { return len(r.Differences) == 0 }

// clockSlack allows for the vault's and the station's clocks and for the
// time between the vault's signature and the station's record.
const clockSlack = 2 * time.Minute

// Reconcile compares a line's recorded assertions and units with what its
// vault's signing log says it signed (logs as the vault answered them, all
// of its rows). Every row of the line's brand and model since since whose
// device key passed through the station, or whose serial one of the
// line's boards was expected to propose, must be in the ledger; every
// assertion of the line in the ledger must be in the log, with the same
// device key and revision.
func Reconcile(l *Line, stationID, brand, model string, logs []serialvault.LogEntry, recorded []ledger.SerialAssertion, units []ledger.Unit, since time.Time) Reconciliation {
	r := Reconciliation{Line: l.ID, Since: since, Differences: []Difference{}}
	r.Truncated = len(logs) >= serialvault.SigningLogWindow
	for _, e := range logs {
		if r.WindowFrom.IsZero() || e.Created.Before(r.WindowFrom) {
			r.WindowFrom = e.Created
		}
	}
	type key struct {
		serial, device string
	}
	ours := map[key][]ledger.SerialAssertion{}
	keys := map[string]bool{}
	for _, a := range recorded {
		if a.LineID != l.ID || a.ReceivedAt.Before(since) {
			continue
		}
		r.LedgerRows++
		ours[key{a.Serial, a.DeviceKeyID}] = append(ours[key{a.Serial, a.DeviceKeyID}], a)
		keys[a.DeviceKeyID] = true
	}
	expected, inWork := map[string]bool{}, map[string]bool{}
	for _, u := range units {
		if u.LineID != l.ID {
			continue
		}
		var serials []string
		if u.Serial != "" {
			serials = append(serials, u.Serial)
		}
		if s, err := ExpandSerial(l.Registration.ExpectedSerial, map[string]string{"hw": u.HWSerial, "slot": u.SlotID, "line": l.ID, "station": stationID}); err == nil {
			serials = append(serials, s)
		}
		for _, s := range serials {
			expected[s] = true
			if u.State == ledger.UnitRunning {
				inWork[s] = true
			}
		}
	}
	seen := map[int64]bool{}
	for _, e := range logs {
		if e.Make != brand || e.Model != model || e.Created.Before(since.Add(-clockSlack)) {
			continue
		}
		r.VaultRows++
		mine := ours[key{e.SerialNumber, e.Fingerprint}]
		var match *ledger.SerialAssertion
		for i := range mine {
			if mine[i].Revision == e.Revision {
				match = &mine[i]
			}
		}
		switch {
		case match != nil:
			r.Matched++
			seen[match.ID] = true
		case len(mine) > 0:
			r.Differences = append(r.Differences, Difference{Kind: DiffNotInLedger, Serial: e.SerialNumber, DeviceKeyID: e.Fingerprint,
				Revision: e.Revision, VaultRow: e.ID, At: e.Created,
				Detail: fmt.Sprintf("the vault signed revision %d of it again; the ledger holds revision %d only", e.Revision, mine[len(mine)-1].Revision)})
		case inWork[e.SerialNumber]:
			r.Pending++
		case keys[e.Fingerprint] || expected[e.SerialNumber]:
			why := "a device key that passed through this station"
			if !keys[e.Fingerprint] {
				why = "a serial one of this line's boards was expected to propose"
			}
			r.Differences = append(r.Differences, Difference{Kind: DiffNotInLedger, Serial: e.SerialNumber, DeviceKeyID: e.Fingerprint,
				Revision: e.Revision, VaultRow: e.ID, At: e.Created,
				Detail: "the vault signed it (" + why + ") and the ledger does not hold it"})
		}
	}
	for _, mine := range ours {
		for _, a := range mine {
			if seen[a.ID] {
				continue
			}
			if r.Truncated && a.ReceivedAt.Before(r.WindowFrom.Add(clockSlack)) {
				r.NotProvable++
				continue
			}
			r.Differences = append(r.Differences, Difference{Kind: DiffNotInVault, Serial: a.Serial, DeviceKeyID: a.DeviceKeyID,
				Revision: a.Revision, AssertionID: a.ID, At: a.ReceivedAt,
				Detail: "the ledger holds it (via " + a.Via + ") and the vault's signing log does not show it"})
		}
	}
	sort.Slice(r.Differences, func(i, j int) bool { return r.Differences[i].At.Before(r.Differences[j].At) })
	return r
}

// SigningLogReader reads a vault's admin signing log; *serialvault.Client
// is one.
type SigningLogReader interface {
	SigningLog(ctx context.Context, adminURL, user string, key secret.Value) ([]serialvault.LogEntry, error)
}

// ReconcileLine reads a line's signing log through c (with the signing-log
// key) and its ledger records, and compares them.
func ReconcileLine(ctx context.Context, l *Line, stationID, brand, model string, c SigningLogReader, key secret.Value, led *ledger.Ledger, since time.Time) (Reconciliation, error) {
	sl := l.Vault.SigningLog
	logs, err := c.SigningLog(ctx, sl.URL, sl.User, key)
	if err != nil {
		return Reconciliation{}, fmt.Errorf("line %s: %w", l.ID, err)
	}
	recorded, err := led.SerialAssertions(ctx, ledger.AssertionFilter{LineID: l.ID})
	if err != nil {
		return Reconciliation{}, err
	}
	units, err := led.Units(ctx, ledger.UnitFilter{LineID: l.ID})
	if err != nil {
		return Reconciliation{}, err
	}
	return Reconcile(l, stationID, brand, model, logs, recorded, units, since), nil
}
