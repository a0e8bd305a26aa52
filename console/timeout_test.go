package console_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/flashstation/flashstation/console"
)

// timerProfile: first bytes within 10 s, stage "kernel" within stage
// seconds of the first bytes, stage "ready" within another 60 s, the whole
// boot within whole seconds.
func timerProfile(stage, whole time.Duration) *console.Profile {
	return &console.Profile{
		Name:       "timers",
		FirstBytes: 10 * time.Second,
		WholeBoot:  whole,
		Stages: []console.Stage{
			{Name: "kernel", Markers: []*regexp.Regexp{regexp.MustCompile(`Linux version`)}, Timeout: stage},
			{Name: "ready", Markers: []*regexp.Regexp{regexp.MustCompile(`login:`)}, Timeout: 60 * time.Second},
		},
	}
}

// TestTimeoutsDoNotRace: the deadline that falls first decides the
// verdict, whenever the check runs (a loaded machine ticks late), and a
// tie goes to the stage.
func TestTimeoutsDoNotRace(t *testing.T) {
	cases := []struct {
		name         string
		stage, whole time.Duration
		tickAt       time.Duration // after the first bytes at t0+1s
		lateBytes    bool          // the marker arrives at tickAt instead of a tick
		want         string
		wantElapsed  time.Duration
	}{
		{"stage first, ticked on time", 20 * time.Second, 60 * time.Second, 20 * time.Second, false, console.ReasonStageTimeout, 21 * time.Second},
		{"stage first, ticked after both", 20 * time.Second, 60 * time.Second, 10 * time.Minute, false, console.ReasonStageTimeout, 21 * time.Second},
		{"cap first, ticked after both", 90 * time.Second, 60 * time.Second, 10 * time.Minute, false, console.ReasonBootTimeout, 60 * time.Second},
		{"tie goes to the stage", 59 * time.Second, 60 * time.Second, 10 * time.Minute, false, console.ReasonStageTimeout, 60 * time.Second},
		{"marker after the stage deadline", 20 * time.Second, 60 * time.Second, 30 * time.Second, true, console.ReasonStageTimeout, 21 * time.Second},
		{"marker after the cap", 90 * time.Second, 60 * time.Second, 70 * time.Second, true, console.ReasonBootTimeout, 60 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := console.NewMachine(timerProfile(c.stage, c.whole), t0)
			first := t0.Add(time.Second)
			m.Feed(first, []byte("U-Boot 2024.01\n"))
			if m.Done() {
				t.Fatal("done after the first line")
			}
			at := first.Add(c.tickAt)
			if c.lateBytes {
				m.Feed(at, []byte("[    0.000000] Linux version 6.8\n"))
			} else {
				m.Tick(at)
			}
			if !m.Done() {
				t.Fatalf("not done at +%s", c.tickAt)
			}
			v := m.Verdict()
			if v.Passed || v.Reason != c.want || v.Elapsed != c.wantElapsed {
				t.Errorf("verdict %v %q after %s, want %q after %s (%s)", v.Passed, v.Reason, v.Elapsed, c.want, c.wantElapsed, v.Detail)
			}
		})
	}
}

// TestMarkerInTimePasses: the same profile passes when each marker comes
// before its deadline, however late the tick that follows.
func TestMarkerInTimePasses(t *testing.T) {
	m := console.NewMachine(timerProfile(20*time.Second, 60*time.Second), t0)
	m.Feed(t0.Add(time.Second), []byte("U-Boot 2024.01\n"))
	m.Feed(t0.Add(20*time.Second), []byte("Linux version 6.8\n"))
	m.Feed(t0.Add(59*time.Second), []byte("ubuntu login:\n"))
	m.Tick(t0.Add(time.Hour))
	if v := m.Verdict(); !m.Done() || !v.Passed {
		t.Fatalf("verdict %+v", v)
	}
}
