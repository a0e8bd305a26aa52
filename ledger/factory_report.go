package ledger

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// SilentAfter is how long a bench may go without reaching the factory
// ledger before the supervisors' figures call it silent (it forwards, or
// beats its heart, every second while it runs).
const SilentAfter = time.Minute

// FactoryFilter selects the units of a factory report; zero fields match
// all.
type FactoryFilter struct {
	LineID, StationID string
	// Since and Until bound when units started: [Since, Until).
	Since, Until time.Time
}

// Figures are the supervisor figures of one line or one bench.
type Figures struct {
	Line    string `json:"line,omitempty"`
	Station string `json:"station,omitempty"`
	Stats
}

// Bench is a station as the factory ledger knows it.
type Bench struct {
	Station  string    `json:"station"`
	Hostname string    `json:"hostname"`
	Lines    []string  `json:"lines"`
	SeenAt   time.Time `json:"seen_at"`
	// Silent: it has not reached the factory ledger for SilentAfter.
	Silent bool `json:"silent"`
}

// FactoryReport is the factory's figures: in all, per line, per line and
// bench, and per bench; the benches and whether they are silent; and the
// serials or device keys two benches recorded.
type FactoryReport struct {
	At         time.Time          `json:"at"`
	Total      Stats              `json:"total"`
	Lines      []Figures          `json:"lines"`
	LineBench  []Figures          `json:"line_benches"`
	Benches    []Figures          `json:"benches"`
	Stations   []Bench            `json:"stations"`
	Duplicates []FactoryDuplicate `json:"factory_duplicates"`
}

// FactoryReport computes the factory's figures over the selected units.
func (l *Ledger) FactoryReport(ctx context.Context, f FactoryFilter) (FactoryReport, error) {
	if l.d != postgresDialect {
		return FactoryReport{}, errors.New("ledger: a factory report needs the factory ledger")
	}
	rep := FactoryReport{At: l.now().UTC()}
	benches, err := l.benches(ctx, f)
	if err != nil {
		return rep, err
	}
	rep.Stations = benches
	base := StatsFilter{LineID: f.LineID, StationID: f.StationID, Since: f.Since, Until: f.Until}
	if rep.Total, err = l.Stats(ctx, base); err != nil {
		return rep, err
	}
	lineSet := map[string]bool{}
	for _, b := range benches {
		for _, ln := range b.Lines {
			if f.LineID == "" || ln == f.LineID {
				lineSet[ln] = true
			}
		}
	}
	lines := slices.Sorted(maps.Keys(lineSet))
	// Each figure is computed once: with one line selected its figures
	// are the total and each bench's are its line-and-bench figures; with
	// one bench selected, its figures are the total and each line's are
	// the line-and-bench figures.
	for _, ln := range lines {
		sf := base
		sf.LineID = ln
		s := rep.Total
		if f.LineID == "" && f.StationID == "" {
			if s, err = l.Stats(ctx, sf); err != nil {
				return rep, err
			}
		}
		var lineBench []Figures
		for _, b := range benches {
			if !slices.Contains(b.Lines, ln) {
				continue
			}
			sf.StationID = b.Station
			bs := rep.Total
			if f.LineID == "" || f.StationID == "" {
				if bs, err = l.Stats(ctx, sf); err != nil {
					return rep, err
				}
			}
			lineBench = append(lineBench, Figures{Line: ln, Station: b.Station, Stats: bs})
		}
		if f.StationID != "" && len(lineBench) == 1 {
			s = lineBench[0].Stats
		}
		rep.Lines = append(rep.Lines, Figures{Line: ln, Stats: s})
		rep.LineBench = append(rep.LineBench, lineBench...)
	}
	for _, b := range benches {
		sf := base
		sf.StationID = b.Station
		var bs Stats
		switch {
		case f.StationID != "":
			bs = rep.Total
		case f.LineID != "":
			for _, lb := range rep.LineBench {
				if lb.Station == b.Station {
					bs = lb.Stats
				}
			}
		default:
			if bs, err = l.Stats(ctx, sf); err != nil {
				return rep, err
			}
		}
		rep.Benches = append(rep.Benches, Figures{Station: b.Station, Stats: bs})
	}
	if rep.Duplicates, err = l.FactoryDuplicates(ctx, f.LineID, f.Since, f.Until); err != nil {
		return rep, err
	}
	if f.StationID != "" {
		kept := []FactoryDuplicate{}
		for _, d := range rep.Duplicates {
			if slices.Contains(d.Stations, f.StationID) {
				kept = append(kept, d)
			}
		}
		rep.Duplicates = kept
	}
	for _, p := range []*[]Figures{&rep.Lines, &rep.LineBench, &rep.Benches} {
		if *p == nil {
			*p = []Figures{}
		}
	}
	return rep, nil
}

// benches lists the stations (those of line, or station alone) with their
// lines and when each last reached the factory ledger.
func (l *Ledger) benches(ctx context.Context, f FactoryFilter) ([]Bench, error) {
	q := `SELECT s.id, s.hostname, s.seen_at, coalesce(string_agg(ln.id, ',' ORDER BY ln.id), '')
		FROM stations s LEFT JOIN lines ln ON ln.station_id = s.id WHERE 1 = 1`
	var args []any
	if f.StationID != "" {
		q += ` AND s.id = ?`
		args = append(args, f.StationID)
	}
	if f.LineID != "" {
		q += ` AND s.id IN (SELECT station_id FROM lines WHERE id = ?)`
		args = append(args, f.LineID)
	}
	rows, err := l.r.QueryContext(ctx, q+` GROUP BY s.id, s.hostname, s.seen_at ORDER BY s.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: benches: %w", err)
	}
	defer rows.Close()
	now := l.now()
	out := []Bench{}
	for rows.Next() {
		var b Bench
		var seen, lines string
		if err := rows.Scan(&b.Station, &b.Hostname, &seen, &lines); err != nil {
			return nil, fmt.Errorf("ledger: benches: %w", err)
		}
		b.SeenAt, b.Lines = parseTime(seen), splitComma(lines)
		if b.Lines == nil {
			b.Lines = []string{}
		}
		b.Silent = b.SeenAt.IsZero() || now.Sub(b.SeenAt) > SilentAfter
		out = append(out, b)
	}
	return out, rows.Err()
}
