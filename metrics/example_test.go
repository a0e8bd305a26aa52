package metrics_test

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/metrics"
)

// A station's metrics count the pipeline's events; Start does this for
// a running pipeline and serves them at station.metrics.listen.
func Example() {
	m := metrics.New(metrics.Options{StationID: "bench-01"})
	m.Observe(lines.Event{Kind: lines.EventVerdict, Line: "line1", State: lines.StatePass, Outcome: "pass"})
	m.Observe(lines.Event{Kind: lines.EventVerdict, Line: "line1", State: lines.StateFail, Outcome: lines.ClassFail, Reason: "write-error"})
	text, err := testutil.GatherAndFormat(m.Registry(), expfmt.TypeTextPlain, metrics.NameUnits, metrics.NameStationInfo)
	if err != nil {
		fmt.Println(err)
	}
	fmt.Print(string(text))
	// Output:
	// # HELP flashstation_station_info The station's id (always 1).
	// # TYPE flashstation_station_info gauge
	// flashstation_station_info{station_id="bench-01"} 1
	// # HELP flashstation_units_total Units finished, by line, verdict (pass, fail: the board's fault, error: the station's, aborted) and reason code (empty for a pass).
	// # TYPE flashstation_units_total counter
	// flashstation_units_total{line="line1",reason="",verdict="pass"} 1
	// flashstation_units_total{line="line1",reason="write-error",verdict="fail"} 1
}
