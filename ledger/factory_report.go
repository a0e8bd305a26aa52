package ledger

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
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
	lineSet := map[string]bool{}
	for _, b := range benches {
		for _, ln := range b.Lines {
			if f.LineID == "" || ln == f.LineID {
				lineSet[ln] = true
			}
		}
	}
	lines := slices.Sorted(maps.Keys(lineSet))
	// The figures wanted, each computed once (with one line selected its
	// figures are the total, and each bench's are its line-and-bench
	// ones; with one bench selected, likewise), side by side on the
	// pool's connections.
	var jobs []statsJob
	want := func(sf StatsFilter, dst *Stats) { jobs = append(jobs, statsJob{sf, dst}) }
	want(base, &rep.Total)
	rep.Lines = make([]Figures, len(lines))
	for i, ln := range lines {
		rep.Lines[i] = Figures{Line: ln}
		if f.LineID == "" && f.StationID == "" {
			sf := base
			sf.LineID = ln
			want(sf, &rep.Lines[i].Stats)
		}
		for _, b := range benches {
			if slices.Contains(b.Lines, ln) {
				rep.LineBench = append(rep.LineBench, Figures{Line: ln, Station: b.Station})
			}
		}
	}
	for i := range rep.LineBench {
		if f.LineID == "" || f.StationID == "" {
			sf := base
			sf.LineID, sf.StationID = rep.LineBench[i].Line, rep.LineBench[i].Station
			want(sf, &rep.LineBench[i].Stats)
		}
	}
	rep.Benches = make([]Figures, len(benches))
	for i, b := range benches {
		rep.Benches[i] = Figures{Station: b.Station}
		if f.LineID == "" && f.StationID == "" {
			sf := base
			sf.StationID = b.Station
			want(sf, &rep.Benches[i].Stats)
		}
	}
	if err := l.statsAll(ctx, jobs); err != nil {
		return rep, err
	}
	// The figures that are others'.
	for i := range rep.Lines {
		switch {
		case f.LineID != "":
			rep.Lines[i].Stats = rep.Total
		case f.StationID != "":
			for _, lb := range rep.LineBench {
				if lb.Line == rep.Lines[i].Line {
					rep.Lines[i].Stats = lb.Stats
				}
			}
		}
	}
	for i := range rep.LineBench {
		if f.LineID != "" && f.StationID != "" {
			rep.LineBench[i].Stats = rep.Total
		}
	}
	for i := range rep.Benches {
		switch {
		case f.StationID != "":
			rep.Benches[i].Stats = rep.Total
		case f.LineID != "":
			for _, lb := range rep.LineBench {
				if lb.Station == rep.Benches[i].Station {
					rep.Benches[i].Stats = lb.Stats
				}
			}
		}
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

// statsJob is one figure of a report and where it goes.
type statsJob struct {
	f   StatsFilter
	dst *Stats
}

// statsAll computes the figures, four at a time.
func (l *Ledger) statsAll(ctx context.Context, jobs []statsJob) error {
	sem := make(chan struct{}, 4)
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			*j.dst, errs[i] = l.Stats(ctx, j.f)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
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
