package ledger

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// StatsFilter selects the units of a report; zero fields match all.
type StatsFilter struct {
	LineID  string
	BatchID int64
	// Batches selects several batches (a station's lines each run one).
	Batches []int64
}

// ReasonCount is one bar of a failure pareto.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  int    `json:"count"`
}

// SlotStat is a slot's share of the work and its failures.
type SlotStat struct {
	Slot     string  `json:"slot"`
	Units    int     `json:"units"`
	Failed   int     `json:"failed"`
	FailRate float64 `json:"fail_rate"`
	// Suspect is set when the slot fails clearly more often than the
	// others (a cable, a hub port, a console adapter to check).
	Suspect bool `json:"suspect"`
}

// Stats is what a supervisor looks at.
type Stats struct {
	Planned         int           `json:"planned"`
	Units           int           `json:"units"`
	Passed          int           `json:"passed"`
	Failed          int           `json:"failed"`
	InProgress      int           `json:"in_progress"`
	Interrupted     int           `json:"interrupted"`
	Boards          int           `json:"boards"`           // distinct hardware serials
	Yield           float64       `json:"yield"`            // passed / finished units
	FirstPassYield  float64       `json:"first_pass_yield"` // boards passing at their first attempt / boards finished
	UnitsPerHour    float64       `json:"units_per_hour"`
	MedianFlash     time.Duration `json:"-"`
	MedianBoot      time.Duration `json:"-"`
	MedianFlashSecs float64       `json:"median_flash_seconds"`
	MedianBootSecs  float64       `json:"median_boot_seconds"`
	Pareto          []ReasonCount `json:"failure_pareto"`
	Slots           []SlotStat    `json:"slots"`
	Duplicates      int           `json:"duplicate_serials"`
	Unmatched       int           `json:"unmatched_serials"`
	First, Last     time.Time     `json:"-"`
}

// Where a table keeps a row's batch, for where.
const (
	unitBatch      = "batch_id"
	batchBatch     = "id"
	assertionBatch = "(SELECT batch_id FROM units WHERE units.id = serial_assertions.unit_id)" // through its unit
)

// where is the filter's WHERE clause on a table whose rows' batch is
// batchExpr (and whose line is line_id).
func (f StatsFilter) where(batchExpr string) (string, []any) {
	var conds []string
	var args []any
	if f.BatchID != 0 {
		conds = append(conds, batchExpr+" = ?")
		args = append(args, f.BatchID)
	}
	if f.LineID != "" {
		conds = append(conds, "line_id = ?")
		args = append(args, f.LineID)
	}
	if len(f.Batches) > 0 {
		conds = append(conds, batchExpr+" IN ("+placeholders(len(f.Batches))+")")
		for _, b := range f.Batches {
			args = append(args, b)
		}
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// Stats computes a report over the selected units with a few aggregate
// queries (indexed by batch and line), fast on large batches.
func (l *Ledger) Stats(ctx context.Context, f StatsFilter) (Stats, error) {
	var s Stats
	where, args := f.where(unitBatch)
	row := l.r.QueryRowContext(ctx, `SELECT count(*),
		coalesce(sum(state = 'pass'), 0), coalesce(sum(state = 'fail'), 0),
		coalesce(sum(state = 'running'), 0), coalesce(sum(state = 'interrupted'), 0),
		count(DISTINCT hw_serial), coalesce(min(started_at), ''), coalesce(max(finished_at), '')
		FROM units`+where, args...)
	var first, last string
	if err := row.Scan(&s.Units, &s.Passed, &s.Failed, &s.InProgress, &s.Interrupted, &s.Boards, &first, &last); err != nil {
		return s, fmt.Errorf("ledger: stats: %w", err)
	}
	s.First, s.Last = parseTime(first), parseTime(last)
	if done := s.Passed + s.Failed; done > 0 {
		s.Yield = float64(s.Passed) / float64(done)
	}
	// Boards that passed at their first attempt, among boards with a verdict.
	bwhere, bargs := f.where(unitBatch)
	prefix := " WHERE "
	if bwhere != "" {
		prefix = bwhere + " AND "
	}
	var boardsDone, firstPass int
	if err := l.r.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(first_ok), 0) FROM (
		SELECT hw_serial, max(attempt = 1 AND state = 'pass') AS first_ok FROM units`+prefix+`state IN ('pass', 'fail')
		GROUP BY batch_id, hw_serial)`, bargs...).Scan(&boardsDone, &firstPass); err != nil {
		return s, fmt.Errorf("ledger: stats: %w", err)
	}
	if boardsDone > 0 {
		s.FirstPassYield = float64(firstPass) / float64(boardsDone)
	}
	if !s.First.IsZero() && s.Last.After(s.First) {
		s.UnitsPerHour = float64(s.Passed+s.Failed) / s.Last.Sub(s.First).Hours()
	}
	// Planned: the batches' plans.
	bw, ba := f.where(batchBatch)
	if err := l.r.QueryRowContext(ctx, `SELECT coalesce(sum(planned), 0) FROM batches`+bw, ba...).Scan(&s.Planned); err != nil {
		return s, fmt.Errorf("ledger: stats: %w", err)
	}
	var err error
	if s.MedianFlash, err = l.median(ctx, "flash_ms + verify_ms", f); err != nil {
		return s, err
	}
	if s.MedianBoot, err = l.median(ctx, "boot_ms", f); err != nil {
		return s, err
	}
	s.MedianFlashSecs, s.MedianBootSecs = s.MedianFlash.Seconds(), s.MedianBoot.Seconds()

	rows, err := l.r.QueryContext(ctx, `SELECT reason, count(*) FROM units`+prefix+`state = 'fail' GROUP BY reason ORDER BY count(*) DESC, reason`, bargs...)
	if err != nil {
		return s, fmt.Errorf("ledger: stats: %w", err)
	}
	for rows.Next() {
		var rc ReasonCount
		if err := rows.Scan(&rc.Reason, &rc.Count); err != nil {
			rows.Close()
			return s, err
		}
		s.Pareto = append(s.Pareto, rc)
	}
	rows.Close()

	rows, err = l.r.QueryContext(ctx, `SELECT slot_id, count(*), coalesce(sum(state = 'fail'), 0) FROM units`+prefix+
		`state IN ('pass', 'fail') GROUP BY slot_id ORDER BY slot_id`, bargs...)
	if err != nil {
		return s, fmt.Errorf("ledger: stats: %w", err)
	}
	for rows.Next() {
		var ss SlotStat
		if err := rows.Scan(&ss.Slot, &ss.Units, &ss.Failed); err != nil {
			rows.Close()
			return s, err
		}
		if ss.Units > 0 {
			ss.FailRate = float64(ss.Failed) / float64(ss.Units)
		}
		s.Slots = append(s.Slots, ss)
	}
	rows.Close()
	markSuspects(s.Slots)

	aw, aa := f.where(assertionBatch)
	if err := l.r.QueryRowContext(ctx, `SELECT coalesce(sum(duplicate), 0), coalesce(sum(unit_id IS NULL), 0) FROM serial_assertions`+aw, aa...).Scan(&s.Duplicates, &s.Unmatched); err != nil {
		return s, fmt.Errorf("ledger: stats: %w", err)
	}
	return s, nil
}

// markSuspects flags slots whose failure rate is well above the others':
// at least two failures and a rate more than two standard errors above
// the rate of the rest of the bench.
func markSuspects(slots []SlotStat) {
	var units, failed int
	for _, s := range slots {
		units += s.Units
		failed += s.Failed
	}
	for i := range slots {
		s := &slots[i]
		restUnits, restFailed := units-s.Units, failed-s.Failed
		if s.Failed < 2 || restUnits == 0 {
			continue
		}
		p := float64(restFailed) / float64(restUnits)
		se := math.Sqrt(max(p*(1-p), 0.01) / float64(s.Units))
		s.Suspect = s.FailRate > p+2*se
	}
}

func (l *Ledger) median(ctx context.Context, expr string, f StatsFilter) (time.Duration, error) {
	where, args := f.where(unitBatch)
	prefix := " WHERE "
	if where != "" {
		prefix = where + " AND "
	}
	var n int
	if err := l.r.QueryRowContext(ctx, `SELECT count(*) FROM units`+prefix+`state = 'pass' AND `+expr+` > 0`, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("ledger: median: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	var ms int64
	err := l.r.QueryRowContext(ctx, `SELECT `+expr+` FROM units`+prefix+`state = 'pass' AND `+expr+` > 0
		ORDER BY `+expr+` LIMIT 1 OFFSET ?`, append(args, n/2)...).Scan(&ms)
	if err != nil {
		return 0, fmt.Errorf("ledger: median: %w", err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// UnitsBySerial returns the units of a board, by hardware serial or the
// serial in its assertion, newest first.
func (l *Ledger) UnitsBySerial(ctx context.Context, serial string) ([]Unit, error) {
	rows, err := l.r.QueryContext(ctx, `SELECT `+unitColumns+` FROM units WHERE hw_serial = ?
		UNION SELECT `+unitColumns+` FROM units WHERE serial = ? ORDER BY id DESC`, serial, serial)
	if err != nil {
		return nil, fmt.Errorf("ledger: units of %s: %w", serial, err)
	}
	defer rows.Close()
	var out []Unit
	for rows.Next() {
		u, err := scanUnit(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
