package lines

import (
	"context"
	"sort"

	"github.com/flashstation/flashstation/ledger"
)

// UnitSummary is one unit of a batch summary.
type UnitSummary struct {
	Unit     int64   `json:"unit"`
	Line     string  `json:"line"`
	Slot     string  `json:"slot"`
	HWSerial string  `json:"hardware_serial"`
	Serial   string  `json:"serial,omitempty"`
	Verdict  string  `json:"verdict"` // pass, fail, error, aborted, running
	Reason   string  `json:"reason,omitempty"`
	Detail   string  `json:"detail,omitempty"`
	Attempt  int     `json:"attempt"`
	Seconds  float64 `json:"seconds"`
}

// Summary is the outcome of batches.
type Summary struct {
	Passed  int           `json:"passed"`
	Failed  int           `json:"failed"`  // the boards' faults
	Errors  int           `json:"errors"`  // the station's faults
	Aborted int           `json:"aborted"` // stopped by the operator, the station or the batch's end
	Running int           `json:"running"`
	Units   []UnitSummary `json:"units"`
}

// Summarize reads the units of batches from the ledger.
func Summarize(ctx context.Context, led *ledger.Ledger, batches []int64) (Summary, error) {
	var s Summary
	for _, b := range batches {
		units, err := led.Units(ctx, ledger.UnitFilter{BatchID: b})
		if err != nil {
			return s, err
		}
		for _, u := range units {
			us := UnitSummary{Unit: u.ID, Line: u.LineID, Slot: u.SlotID, HWSerial: u.HWSerial, Serial: u.Serial,
				Verdict: u.State, Reason: u.Reason, Detail: firstLine(u.Detail), Attempt: u.Attempt}
			if !u.FinishedAt.IsZero() {
				us.Seconds = u.FinishedAt.Sub(u.StartedAt).Seconds()
			}
			switch u.State {
			case ledger.UnitPass:
				s.Passed++
			case ledger.UnitFail:
				s.Failed++
			case ledger.UnitError:
				s.Errors++
			case ledger.UnitAborted:
				s.Aborted++
			default:
				s.Running++
			}
			s.Units = append(s.Units, us)
		}
	}
	sort.Slice(s.Units, func(i, j int) bool { return s.Units[i].Unit < s.Units[j].Unit })
	if s.Units == nil {
		s.Units = []UnitSummary{}
	}
	return s, nil
}
