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
	// Since and Until bound when units started: [Since, Until).
	Since, Until time.Time
	// Verdict keeps only units with this outcome (UnitPass, UnitFail, ...).
	Verdict string
	// StationID keeps one bench's units (a factory ledger holds many).
	StationID string
}

// ReasonCount is one bar of a failure pareto.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  int    `json:"count"`
}

// SlotStat is a slot's share of the work and its failures (pass and
// fail units only).
type SlotStat struct {
	Line     string  `json:"line"`
	Slot     string  `json:"slot"`
	Units    int     `json:"units"`
	Failed   int     `json:"failed"`
	FailRate float64 `json:"fail_rate"`
	// FailedBoards counts the different boards that failed there.
	FailedBoards int `json:"failed_boards"`
	// Suspect is set when at least SuspectBoards different boards failed
	// in the slot and its failure rate is well above the rest of its
	// line's (a cable, a hub port, a console adapter to check).
	Suspect bool `json:"suspect"`
}

// SuspectBoards is how many different boards must have failed in a slot
// before the slot itself is suspected: one board retried there proves
// nothing of the slot.
const SuspectBoards = 3

// Stats is what a supervisor looks at. The definitions (README,
// "Supervisor figures") are:
//   - a board is one hardware serial in one batch; it is finished when one
//     of its units ended pass or fail (error and aborted say nothing of the
//     board and are counted apart);
//   - Yield = boards passed / boards finished;
//   - FirstPassYield = boards whose first pass-or-fail unit passed / boards
//     finished, so Yield >= FirstPassYield;
//   - UnitsPerHour = passes per hour of active time, the time during which
//     at least one unit was in work;
//   - the failure pareto counts fail units by reason; station errors have
//     their own list.
//
// A figure without data (no board finished, no active time) is nil, shown
// as "—", never as 0%.
type Stats struct {
	Planned        int `json:"planned"`
	Units          int `json:"units"` // every attempt
	Passed         int `json:"passed"`
	Failed         int `json:"failed"`
	Errors         int `json:"errors"`
	Aborted        int `json:"aborted"`
	InProgress     int `json:"in_progress"`
	Boards         int `json:"boards"` // distinct boards (hardware serial per batch)
	BoardsFinished int `json:"boards_finished"`
	BoardsPassed   int `json:"boards_passed"`
	FirstPass      int `json:"boards_first_pass"`

	Yield          *float64      `json:"yield"`
	FirstPassYield *float64      `json:"first_pass_yield"`
	UnitsPerHour   *float64      `json:"units_per_hour"`
	ActiveTime     time.Duration `json:"-"`
	ActiveSecs     float64       `json:"active_seconds"`

	MedianFlash     time.Duration `json:"-"`
	MedianBoot      time.Duration `json:"-"`
	MedianFlashSecs float64       `json:"median_flash_seconds"`
	MedianBootSecs  float64       `json:"median_boot_seconds"`
	Pareto          []ReasonCount `json:"failure_pareto"`
	ErrorReasons    []ReasonCount `json:"error_reasons"`
	Slots           []SlotStat    `json:"slots"`
	Duplicates      int           `json:"duplicate_serials"`
	Unmatched       int           `json:"unmatched_serials"`
	First, Last     time.Time     `json:"-"`
}

// ratio is a/b, or nil without data.
func ratio(a, b float64) *float64 {
	if b <= 0 {
		return nil
	}
	r := a / b
	return &r
}

// table names the columns a filter applies to in one table ("" where it
// does not apply); batch is a condition with %s where the comparison goes.
type table struct{ batch, time, state string }

var (
	unitsTable   = table{batch: "batch_id %s", time: "started_at", state: "state"}
	batchesTable = table{batch: "id %s", time: "started_at"}
	// An assertion's batch is its unit's: the units of the batch by their
	// index, then their assertions by theirs.
	assertionsTable = table{batch: "unit_id IN (SELECT id FROM units WHERE batch_id %s)", time: "received_at"}
)

// where is the filter's WHERE clause on a table (whose line is line_id),
// with extra conditions; it is never empty, so callers can add "AND".
func (f StatsFilter) where(t table, extra ...string) (string, []any) {
	conds := []string{"1 = 1"}
	var args []any
	if f.BatchID != 0 {
		conds = append(conds, fmt.Sprintf(t.batch, "= ?"))
		args = append(args, f.BatchID)
	}
	if f.LineID != "" {
		conds = append(conds, "line_id = ?")
		args = append(args, f.LineID)
	}
	if f.StationID != "" {
		conds = append(conds, "station_id = ?")
		args = append(args, f.StationID)
	}
	if len(f.Batches) > 0 {
		conds = append(conds, fmt.Sprintf(t.batch, "IN ("+placeholders(len(f.Batches))+")"))
		for _, b := range f.Batches {
			args = append(args, b)
		}
	}
	if !f.Since.IsZero() {
		conds = append(conds, t.time+" >= ?")
		args = append(args, fmtTime(f.Since))
	}
	if !f.Until.IsZero() {
		conds = append(conds, t.time+" < ?")
		args = append(args, fmtTime(f.Until))
	}
	if f.Verdict != "" && t.state != "" {
		conds = append(conds, t.state+" = ?")
		args = append(args, f.Verdict)
	}
	return " WHERE " + strings.Join(append(conds, extra...), " AND "), args
}

// boardKey is a unit's board: its hardware serial, or the unit itself when
// the board gave none.
const boardKey = "CASE WHEN hw_serial = '' THEN 'unit:' || id ELSE hw_serial END"

// Stats computes a report over the selected units with a few aggregate
// queries (indexed by batch, line and start time), fast on large batches.
func (l *Ledger) Stats(ctx context.Context, f StatsFilter) (Stats, error) {
	var s Stats
	where, args := f.where(unitsTable)
	var first, last string
	if err := l.r.QueryRowContext(ctx, `SELECT count(*),
		coalesce(sum(CASE WHEN state = 'pass' THEN 1 ELSE 0 END), 0), coalesce(sum(CASE WHEN state = 'fail' THEN 1 ELSE 0 END), 0), coalesce(sum(CASE WHEN state = 'error' THEN 1 ELSE 0 END), 0),
		coalesce(sum(CASE WHEN state = 'aborted' THEN 1 ELSE 0 END), 0), coalesce(sum(CASE WHEN state = 'running' THEN 1 ELSE 0 END), 0),
		count(DISTINCT batch_id || '/' || `+boardKey+`), coalesce(min(started_at), ''), coalesce(max(finished_at), '')
		FROM units`+where, args...).Scan(&s.Units, &s.Passed, &s.Failed, &s.Errors, &s.Aborted, &s.InProgress,
		&s.Boards, &first, &last); err != nil {
		return s, fmt.Errorf("ledger: stats: %w", err)
	}
	s.First, s.Last = parseTime(first), parseTime(last)

	// Boards with a pass or fail: did one pass, did the first one pass.
	where, args = f.where(unitsTable, "state IN ('pass', 'fail')")
	if err := l.r.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(g.passed), 0),
		coalesce(sum(CASE WHEN f.state = 'pass' THEN 1 ELSE 0 END), 0) FROM (
		SELECT min(id) AS first, max(CASE WHEN state = 'pass' THEN 1 ELSE 0 END) AS passed FROM units`+where+`
		GROUP BY batch_id, `+boardKey+`) g JOIN units f ON f.id = g.first`, args...).Scan(&s.BoardsFinished, &s.BoardsPassed, &s.FirstPass); err != nil {
		return s, fmt.Errorf("ledger: stats: %w", err)
	}
	s.Yield = ratio(float64(s.BoardsPassed), float64(s.BoardsFinished))
	s.FirstPassYield = ratio(float64(s.FirstPass), float64(s.BoardsFinished))

	var err error
	if s.ActiveTime, err = l.activeTime(ctx, f); err != nil {
		return s, err
	}
	s.ActiveSecs = s.ActiveTime.Seconds()
	if s.Passed+s.Failed+s.Errors+s.Aborted > 0 {
		s.UnitsPerHour = ratio(float64(s.Passed), s.ActiveTime.Hours())
	}

	bw, ba := f.where(batchesTable)
	if err := l.r.QueryRowContext(ctx, `SELECT coalesce(sum(planned), 0) FROM batches`+bw, ba...).Scan(&s.Planned); err != nil {
		return s, fmt.Errorf("ledger: stats: %w", err)
	}
	if s.MedianFlash, err = l.median(ctx, "flash_ms + verify_ms", f); err != nil {
		return s, err
	}
	if s.MedianBoot, err = l.median(ctx, "boot_ms", f); err != nil {
		return s, err
	}
	s.MedianFlashSecs, s.MedianBootSecs = s.MedianFlash.Seconds(), s.MedianBoot.Seconds()

	if s.Pareto, err = l.reasons(ctx, f, UnitFail); err != nil {
		return s, err
	}
	if s.ErrorReasons, err = l.reasons(ctx, f, UnitError); err != nil {
		return s, err
	}
	if s.Slots, err = l.slotStats(ctx, f); err != nil {
		return s, err
	}
	markSuspects(s.Slots)

	// Lists are [] in JSON, never null.
	for _, l := range []*[]ReasonCount{&s.Pareto, &s.ErrorReasons} {
		if *l == nil {
			*l = []ReasonCount{}
		}
	}
	if s.Slots == nil {
		s.Slots = []SlotStat{}
	}
	aw, aa := f.where(assertionsTable)
	if err := l.r.QueryRowContext(ctx, `SELECT coalesce(sum(duplicate), 0), coalesce(sum(CASE WHEN unit_id IS NULL THEN 1 ELSE 0 END), 0) FROM serial_assertions`+aw, aa...).Scan(&s.Duplicates, &s.Unmatched); err != nil {
		return s, fmt.Errorf("ledger: stats: %w", err)
	}
	return s, nil
}

// reasons counts the units of one outcome by reason, most first.
func (l *Ledger) reasons(ctx context.Context, f StatsFilter, state string) ([]ReasonCount, error) {
	where, args := f.where(unitsTable, "state = ?")
	rows, err := l.r.QueryContext(ctx, `SELECT reason, count(*) FROM units`+where+` GROUP BY reason ORDER BY count(*) DESC, reason`,
		append(args, state)...)
	if err != nil {
		return nil, fmt.Errorf("ledger: stats: %w", err)
	}
	defer rows.Close()
	var out []ReasonCount
	for rows.Next() {
		var rc ReasonCount
		if err := rows.Scan(&rc.Reason, &rc.Count); err != nil {
			return nil, err
		}
		out = append(out, rc)
	}
	return out, rows.Err()
}

func (l *Ledger) slotStats(ctx context.Context, f StatsFilter) ([]SlotStat, error) {
	where, args := f.where(unitsTable, "state IN ('pass', 'fail')")
	rows, err := l.r.QueryContext(ctx, `SELECT line_id, slot_id, count(*), coalesce(sum(CASE WHEN state = 'fail' THEN 1 ELSE 0 END), 0),
		count(DISTINCT CASE WHEN state = 'fail' THEN batch_id || '/' || `+boardKey+` END)
		FROM units`+where+` GROUP BY line_id, slot_id ORDER BY line_id, slot_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: stats: %w", err)
	}
	defer rows.Close()
	var out []SlotStat
	for rows.Next() {
		var ss SlotStat
		if err := rows.Scan(&ss.Line, &ss.Slot, &ss.Units, &ss.Failed, &ss.FailedBoards); err != nil {
			return nil, err
		}
		if ss.Units > 0 {
			ss.FailRate = float64(ss.Failed) / float64(ss.Units)
		}
		out = append(out, ss)
	}
	return out, rows.Err()
}

// activeTime is how long at least one selected unit was in work: the
// union of the units' spans (a running unit's up to now), so breaks and a
// stopped station do not dilute the rate.
func (l *Ledger) activeTime(ctx context.Context, f StatsFilter) (time.Duration, error) {
	where, args := f.where(unitsTable)
	rows, err := l.r.QueryContext(ctx, `SELECT started_at, coalesce(finished_at, '') FROM units`+where+` ORDER BY started_at`, args...)
	if err != nil {
		return 0, fmt.Errorf("ledger: active time: %w", err)
	}
	defer rows.Close()
	now := l.now()
	var total time.Duration
	var from, to time.Time
	for rows.Next() {
		var a, b string
		if err := rows.Scan(&a, &b); err != nil {
			return 0, err
		}
		start, end := parseTime(a), now
		if b != "" {
			end = parseTime(b)
		}
		switch {
		case from.IsZero():
			from, to = start, end
		case start.After(to):
			total += to.Sub(from)
			from, to = start, end
		case end.After(to):
			to = end
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if !from.IsZero() {
		total += to.Sub(from)
	}
	return total, nil
}

// markSuspects flags slots where at least SuspectBoards different boards
// failed and whose failure rate is more than two standard errors above
// the rate of the rest of their line.
func markSuspects(slots []SlotStat) {
	type tally struct{ units, failed int }
	lines := map[string]tally{}
	for _, s := range slots {
		t := lines[s.Line]
		t.units += s.Units
		t.failed += s.Failed
		lines[s.Line] = t
	}
	for i := range slots {
		s := &slots[i]
		line := lines[s.Line]
		restUnits, restFailed := line.units-s.Units, line.failed-s.Failed
		if s.FailedBoards < SuspectBoards || restUnits == 0 {
			continue
		}
		p := float64(restFailed) / float64(restUnits)
		se := math.Sqrt(max(p*(1-p), 0.01) / float64(s.Units))
		s.Suspect = s.FailRate > p+2*se
	}
}

func (l *Ledger) median(ctx context.Context, expr string, f StatsFilter) (time.Duration, error) {
	where, args := f.where(unitsTable, "state = 'pass'", expr+" > 0")
	var n int
	if err := l.r.QueryRowContext(ctx, `SELECT count(*) FROM units`+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("ledger: median: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	var ms int64
	err := l.r.QueryRowContext(ctx, `SELECT `+expr+` FROM units`+where+`
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

// NoData is how a figure without data is shown.
const NoData = "—"

// Percent shows a ratio as a percentage, NoData without data.
func Percent(r *float64) string {
	if r == nil {
		return NoData
	}
	return fmt.Sprintf("%.1f%%", 100**r)
}

// Rate shows a rate with one decimal, NoData without data.
func Rate(r *float64) string {
	if r == nil {
		return NoData
	}
	return fmt.Sprintf("%.1f", *r)
}
