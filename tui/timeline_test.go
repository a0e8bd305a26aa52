package tui

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/lines"
)

func TestTimelineSpans(t *testing.T) {
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	state := func(name string, s float64) mark { return mark{Name: name, At: at(s)} }
	stage := func(name string, s float64) mark { return mark{Name: name, At: at(s), Stage: true} }
	tests := []struct {
		name  string
		tl    []mark
		end   time.Time
		ended bool
		want  []string // per mark: seconds, "open N", or "-"
	}{
		{"a state spans its stages", []mark{
			state("flashing", 0), state("booting", 5), stage("bootloader", 6.5), stage("install-boot", 9), state("register", 15), state("pass", 16.5),
		}, at(16.5), true, []string{"5.0", "10.0", "2.5", "6.0", "1.5", "-"}},
		{"stage right at its state", []mark{
			state("booting", 0), stage("install-boot", 0), state("fail", 6),
		}, at(6), true, []string{"6.0", "6.0", "-"}},
		{"running: the last state and stage are open", []mark{
			state("flashing", 0), state("booting", 4), stage("kernel", 5),
		}, at(12), false, []string{"4.0", "open 8.0", "open 7.0"}},
		{"skipped stages are passed over", []mark{
			state("booting", 0), stage("bootloader", 1), {Name: "kernel", At: at(2), Stage: true, Skipped: true}, stage("seeding", 4), state("pass", 10),
		}, at(10), true, []string{"10.0", "3.0", "-", "6.0", "-"}},
		{"ended without a verdict mark: until its end", []mark{
			state("booting", 0), stage("kernel", 2),
		}, at(7), true, []string{"7.0", "5.0"}},
		{"ended at an unknown time: no running timer", []mark{
			state("booting", 0), stage("kernel", 2),
		}, time.Time{}, true, []string{"-", "-"}},
		{"empty", nil, at(1), false, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := []string{}
			for _, sp := range timelineSpans(tc.tl, tc.end, tc.ended) {
				switch {
				case sp.none:
					got = append(got, "-")
				case sp.open:
					got = append(got, fmt.Sprintf("open %.1f", sp.d.Seconds()))
				default:
					got = append(got, fmt.Sprintf("%.1f", sp.d.Seconds()))
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("spans = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDetailTimelineAddsUp reads the durations off the detail view: the
// BOOTING line is the sum of its stages, never 0.0s above them.
func TestDetailTimelineAddsUp(t *testing.T) {
	f := detailFixture(t, 120, 40)
	f.keys(t, "enter")
	durs := map[string]float64{}
	var stages float64
	inBoot := false
	for _, row := range strings.Split(f.screen(), "\n") {
		left, _, ok := strings.Cut(row, "│")
		if !ok {
			continue
		}
		var name string
		var d float64
		if n, _ := fmt.Sscanf(strings.TrimSpace(left), "%s %fs", &name, &d); n != 2 {
			continue
		}
		durs[name] = d
		staged := strings.HasPrefix(left, "  ")
		switch {
		case !staged:
			inBoot = name == strings.ToUpper(lines.StateBooting)
		case inBoot:
			stages += d
		}
	}
	boot, ok := durs["BOOTING"]
	if !ok || stages == 0 {
		t.Fatalf("no BOOTING line or stages in the timeline (%v):\n%s", durs, f.screen())
	}
	if fmt.Sprintf("%.1f", boot) != fmt.Sprintf("%.1f", 1.5+stages) {
		t.Errorf("BOOTING %.1fs, want its stages' %.1fs and the 1.5s before the first", boot, stages)
	}
	if boot != 10.4 {
		t.Errorf("BOOTING %.1fs, want 10.4s", boot)
	}
}
