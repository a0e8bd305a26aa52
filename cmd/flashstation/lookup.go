package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
)

// checkScope refuses a read command's --line and --batch when they name
// nothing in the record (exit 3), instead of answering with zeros or an
// empty list. A line is known when the station file or the ledger has it;
// a batch when the ledger has it (on that line, when both are given).
func checkScope(ctx context.Context, led *ledger.Ledger, st *lines.Station, line string, batch int64) error {
	if line != "" {
		if err := checkLine(ctx, led, st, line); err != nil {
			return err
		}
	}
	if batch == 0 {
		return nil
	}
	if batch < 0 {
		return usageErrorf("--batch %d: want a batch id (1, 2, ...)", batch)
	}
	b, err := led.Batch(ctx, batch)
	if errors.Is(err, ledger.ErrNotFound) {
		ids, err := led.BatchIDs(ctx)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return noMatch("Run a batch first ('flashstation run'), or check --config: is it this bench's station file?",
				"no batch %d: the ledger %s has no batch yet", batch, led.Path())
		}
		return noMatch(fmt.Sprintf("Pick one of the recorded batches (%s), or leave out --batch for all of them.", idList(ids)),
			"no batch %d in the ledger %s", batch, led.Path())
	}
	if err != nil {
		return err
	}
	if line != "" && b.LineID != line {
		return noMatch(fmt.Sprintf("Leave out --line, or give --line %s.", b.LineID),
			"batch %d is on line %s, not on line %s", batch, b.LineID, line)
	}
	return nil
}

// checkLine refuses a line that neither the station file nor the ledger
// knows (exit 3).
func checkLine(ctx context.Context, led *ledger.Ledger, st *lines.Station, line string) error {
	if _, ok := st.LineByID(line); ok {
		return nil
	}
	recorded, err := led.Lines(ctx)
	if err != nil {
		return err
	}
	known := make([]string, 0, len(st.Lines)+len(recorded))
	for _, l := range st.Lines {
		known = append(known, l.ID)
	}
	for _, l := range recorded {
		if l.ID == line {
			return nil
		}
		if !slices.Contains(known, l.ID) {
			known = append(known, l.ID)
		}
	}
	hint := "The station file and the ledger name no line."
	if len(known) > 0 {
		hint = fmt.Sprintf("Give one of the known lines (%s), or leave out --line for all of them.", strings.Join(known, ", "))
	}
	return noMatch(hint, "no line %q: neither %s nor its ledger has it", line, st.Path)
}

// idList writes ascending ids compactly: "1-3, 7".
func idList(ids []int64) string {
	var parts []string
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		switch {
		case j == i:
			parts = append(parts, strconv.FormatInt(ids[i], 10))
		case j == i+1:
			parts = append(parts, strconv.FormatInt(ids[i], 10), strconv.FormatInt(ids[j], 10))
		default:
			parts = append(parts, fmt.Sprintf("%d-%d", ids[i], ids[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}
