package tui

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/tui/tuitest"
)

func TestMain(m *testing.M) {
	time.Local = time.UTC // golden views show clock times
	os.Exit(m.Run())
}

// t0 is the fixtures' clock.
var t0 = time.Date(2026, 11, 28, 9, 30, 0, 0, time.UTC)

type fixture struct {
	m   *Model
	st  *tuitest.Station
	led *ledger.Ledger
	dir string
}

// health is two lines' health with their batches.
func health(b1, b2 int64) []lines.LineHealth {
	return []lines.LineHealth{
		{Line: "line1", Name: "Gateway UMS", Capture: "proxy", Batch: ledger.Batch{ID: b1, LineID: "line1", Operator: "ana", Planned: 8},
			Finished: 5, Vault: "http://vault:8080/v1/", VaultOK: true, VaultChecked: t0, Proxy: "0.0.0.0:8081",
			ProxyStats: serialvault.ProxyStats{Recorded: 3}},
		{Line: "line2", Name: "Gateway fastboot", Capture: "console", Batch: ledger.Batch{ID: b2, LineID: "line2", Operator: "ana", Planned: 8},
			Finished: 3, Vault: "http://vault:8080/v1/", VaultOK: true, VaultChecked: t0},
	}
}

// newFixture builds the interface over a fake station with the given
// slots and a ledger holding two lines' batches (filled by seedLedger).
func newFixture(t testing.TB, w, h int, slots []lines.SlotView) *fixture {
	t.Helper()
	return newFixtureAs(t, w, h, slots, "ana")
}

// newFixtureAs is newFixture with the operator the station was started
// with ("": the interface asks).
func newFixtureAs(t testing.TB, w, h int, slots []lines.SlotView, operator string) *fixture {
	t.Helper()
	dir := t.TempDir()
	clock := t0
	led, err := ledger.Open(context.Background(), filepath.Join(dir, ledger.FileName), ledger.WithClock(func() time.Time {
		clock = clock.Add(7 * time.Second)
		return clock
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	b1, b2 := seedLedger(t, led, dir)
	st := tuitest.New(slots, health(b1, b2))
	m := New(context.Background(), Options{Station: st, Records: led, StationID: "bench-01", Operator: operator,
		ExportDir: "/var/lib/flashstation/exports", Logger: zerolog.Nop(), Now: func() time.Time { return t0 }, Width: w, Height: h,
		Tick: func(time.Duration, func(time.Time) tea.Msg) tea.Cmd { return nil }})
	return &fixture{m: m, st: st, led: led, dir: dir}
}

// seedLedger records two batches: line1 (A slots) with passes and two
// failures, line2 (B slots) with passes and a kernel panic; unit 1 has a
// serial assertion and a console transcript.
func seedLedger(t testing.TB, led *ledger.Ledger, dir string) (int64, int64) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(led.EnsureStation(ctx, ledger.Station{ID: "bench-01"}))
	var batches []int64
	for _, l := range []string{"line1", "line2"} {
		must(led.EnsureLine(ctx, ledger.Line{ID: l, StationID: "bench-01", BrandID: "acme", Model: "gw-armhf"}))
		b := ledger.Batch{LineID: l, Operator: "ana", Planned: 8}
		if l == "line1" { // line2 shows a batch started before the image identity gate
			b.ModelDigest, b.SeedLabel, b.ModelSignKey = "mQx3oCNXzOaHsTl5E8OjAGyBSGl5gD6vOT7iTMC1Mxvc", "20261202", "Ov2pQ1ltAr_FCGAzoBVv_Us5nTn0"
		}
		id, err := led.StartBatch(ctx, b)
		must(err)
		batches = append(batches, id)
	}
	units := []struct {
		batch      int
		slot, hw   string
		state, why string
	}{
		{0, "A1", "HW1001", "pass", ""}, {0, "A2", "HW1002", "fail", "write-error"}, {0, "A3", "HW1003", "pass", ""},
		{0, "A2", "HW1002", "pass", ""}, {0, "A4", "HW1004", "fail", "stage-timeout"},
		{1, "B1", "HW2001", "pass", ""}, {1, "B2", "HW2002", "fail", "kernel-panic"}, {1, "B3", "HW2003", "pass", ""},
	}
	for i, u := range units {
		id, err := led.StartUnit(ctx, ledger.Unit{BatchID: batches[u.batch], LineID: []string{"line1", "line2"}[u.batch], SlotID: u.slot, HWSerial: u.hw})
		must(err)
		p := ledger.UnitProgress{MappedBytes: 96 << 20, WrittenBytes: 96 << 20, FlashTime: 4 * time.Second, VerifyTime: 2 * time.Second,
			BootTime: time.Duration(20+i) * time.Second}
		if u.state == "pass" {
			p.Serial = "ACME-" + u.hw[2:]
		}
		must(led.UpdateUnit(ctx, id, p))
		must(led.AppendEvents(ctx, ledger.Event{BatchID: batches[u.batch], UnitID: id, SlotID: u.slot, Kind: "state", Stage: "present", Message: "board " + u.hw + " on 1-1." + fmt.Sprint(i)}))
		if i == 0 {
			a := ledger.SerialAssertion{Text: []byte("type: serial\nauthority-id: acme\nbrand-id: acme\nmodel: gw-armhf\nserial: ACME-1001\n\nSIG\n"),
				BrandID: "acme", Model: "gw-armhf", Serial: "ACME-1001", DeviceKeyID: "Cj9aXkQ1Zr0x", LineID: "line1", UnitID: id, Via: ledger.ViaProxy}
			_, _, err := led.RecordSerialAssertion(ctx, a)
			must(err)
			clean := filepath.Join(dir, "unit1.log")
			must(os.WriteFile(clean, []byte("U-Boot 2024.01 (Nov 01 2026)\nStarting kernel ...\n[    1.2] snapd starting\nUbuntu Core 24 on 192.168.7.2 (tty1)\n"), 0o644))
			_, err = led.AddTranscript(ctx, ledger.Transcript{UnitID: id, SlotID: u.slot, Kind: ledger.TranscriptClean, Path: clean, Size: 80})
			must(err)
		}
		must(led.FinishUnit(ctx, id, u.state, u.why, map[bool]string{true: "", false: "detail of " + u.why}[u.why == ""]))
	}
	return batches[0], batches[1]
}

// send runs a message through the root and then the commands it returns,
// each to its end: the fixture's interface has no clock and no event
// stream, so no command waits for anything but its own work.
func (f *fixture) send(t testing.TB, msg tea.Msg) {
	t.Helper()
	_, cmd := f.m.Update(msg)
	f.run(t, cmd, 0)
}

func (f *fixture) run(t testing.TB, cmd tea.Cmd, depth int) {
	if cmd == nil || depth > 4 {
		return
	}
	switch msg := cmd().(type) {
	case nil:
	case tea.BatchMsg:
		for _, c := range msg {
			f.run(t, c, depth+1)
		}
	case tea.QuitMsg:
	default:
		_, next := f.m.Update(msg)
		f.run(t, next, depth+1)
	}
}

// keys sends key presses: "enter", "up", "q", ...
func (f *fixture) keys(t testing.TB, keys ...string) {
	t.Helper()
	for _, k := range keys {
		f.send(t, keyMsg(k))
	}
}

func keyMsg(k string) tea.KeyPressMsg {
	switch k {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "up":
		return tea.KeyPressMsg{Code: tea.KeyUp}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	case "left":
		return tea.KeyPressMsg{Code: tea.KeyLeft}
	case "right":
		return tea.KeyPressMsg{Code: tea.KeyRight}
	case "pgup":
		return tea.KeyPressMsg{Code: tea.KeyPgUp}
	case "pgdown":
		return tea.KeyPressMsg{Code: tea.KeyPgDown}
	case "end":
		return tea.KeyPressMsg{Code: tea.KeyEnd}
	case "home":
		return tea.KeyPressMsg{Code: tea.KeyHome}
	case "ctrl+c":
		return tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}
	case "backspace":
		return tea.KeyPressMsg{Code: tea.KeyBackspace}
	}
	r := []rune(k)[0]
	return tea.KeyPressMsg{Code: r, Text: k}
}

// screen is the rendered view without styles.
func (f *fixture) screen() string { return ansi.Strip(f.m.Render()) }

// slotsIdle is n empty slots, alternately on line1 (A) and line2 (B).
func slotsIdle(n int) []lines.SlotView {
	var out []lines.SlotView
	for i := range n {
		id, line := fmt.Sprintf("A%d", i/2+1), "line1"
		if i%2 == 1 {
			id, line = fmt.Sprintf("B%d", i/2+1), "line2"
		}
		out = append(out, lines.SlotView{ID: id, Line: line, State: lines.StateIdle})
	}
	return out
}

// slotsFlashing is n slots flashing at different points.
func slotsFlashing(n int) []lines.SlotView {
	out := slotsIdle(n)
	for i := range out {
		total := int64(96 << 20)
		done := total * int64(i+1) / int64(n+1)
		out[i].State, out[i].Stage = lines.StateFlashing, "write"
		out[i].HWSerial, out[i].Unit, out[i].Attempt = fmt.Sprintf("HW%04d", 3000+i), int64(100+i), 1
		out[i].StartedAt = t0.Add(-time.Duration(5+i) * time.Second)
		out[i].Progress = lines.Progress{Phase: "write", Done: done, Total: total, Rate: 38.5e6 - float64(i)*1e6,
			ETA: time.Duration(float64(total-done)/38.5e6*1e9) * time.Nanosecond}
		out[i].LastLine = "U-Boot SPL 2024.01"
	}
	return out
}

// slotsMixed is 16 slots in every state.
func slotsMixed() []lines.SlotView {
	out := slotsFlashing(16)
	set := func(i int, f func(v *lines.SlotView)) { f(&out[i]) }
	set(0, func(v *lines.SlotView) {
		v.State, v.Serial, v.Stage, v.LastLine = lines.StatePass, "ACME-1001", "registered", "Ubuntu Core 24 on 192.168.7.2 (tty1)"
	})
	set(1, func(v *lines.SlotView) {
		v.State, v.Reason, v.Detail, v.Stage = lines.StateFail, "kernel-panic", "Kernel panic - not syncing: VFS: Unable to mount root fs", "kernel"
		v.LastLine = "Kernel panic - not syncing: VFS: Unable to mount root fs"
	})
	set(2, func(v *lines.SlotView) {
		v.State, v.Stage, v.LastLine = lines.StateBooting, "snapd-seeding", "[   12.345678] snapd[412]: seeding the system"
	})
	set(3, func(v *lines.SlotView) {
		v.State, v.Stage, v.LastLine = lines.StateRegister, "registration", "snapd: device registration"
	})
	set(4, func(v *lines.SlotView) {
		v.State, v.Reason, v.Detail = lines.StateFail, "write-error", "write /dev/sdc at 48 MiB: input/output error"
		v.Attempt = 2
	})
	set(5, func(v *lines.SlotView) { *v = lines.SlotView{ID: v.ID, Line: v.Line, State: lines.StateIdle} })
	set(6, func(v *lines.SlotView) {
		*v = lines.SlotView{ID: v.ID, Line: v.Line, State: lines.StateDisabled, Disabled: true}
	})
	set(7, func(v *lines.SlotView) {
		v.State, v.Serial, v.Duplicate = lines.StatePass, "ACME-3007", true
	})
	set(8, func(v *lines.SlotView) {
		v.Progress.Phase, v.Stage = "verify", "verify"
	})
	set(9, func(v *lines.SlotView) {
		v.State, v.Stage, v.LastLine = lines.StatePresent, "present", ""
		v.Progress = lines.Progress{}
	})
	return out
}

// unitEvents is a unit's life on a slot as the pipeline reports it:
// present, flashing with progress, its figures, booting through stages
// with console lines, then the verdict (reason "" passes).
func unitEvents(slot, line string, unit int64, hw string, start time.Time, reason string) []lines.Event {
	at := start
	ev := func(d time.Duration, e lines.Event) lines.Event {
		at = at.Add(d)
		e.At, e.Slot, e.Line, e.Unit = at, slot, line, unit
		return e
	}
	total := int64(96 << 20)
	out := []lines.Event{
		ev(0, lines.Event{Kind: lines.EventState, State: lines.StatePresent, HWSerial: hw}),
		ev(100*time.Millisecond, lines.Event{Kind: lines.EventState, State: lines.StateFlashing, HWSerial: hw}),
	}
	for i := 1; i <= 4; i++ {
		out = append(out, ev(time.Second, lines.Event{Kind: lines.EventProgress, Progress: lines.Progress{Phase: "write", Done: total * int64(i) / 4, Total: total, Rate: 25e6}}))
	}
	out = append(out, ev(time.Second, lines.Event{Kind: lines.EventProgress, Progress: lines.Progress{Phase: "verify", Done: total, Total: total, Rate: 96e6}}),
		ev(0, lines.Event{Kind: lines.EventFlash, Flash: &lines.FlashFigures{Target: "/dev/sdc", Mapped: total, Written: total,
			Write: 4 * time.Second, Verify: time.Second, Verified: true}}),
		ev(200*time.Millisecond, lines.Event{Kind: lines.EventState, State: lines.StateBooting, HWSerial: hw}))
	console := []string{"U-Boot 2024.01 (Nov 01 2026)", "DRAM:  948 MiB", "Starting kernel ...",
		"[    0.000000] Booting Linux on physical CPU 0x0", "[    1.204000] mmcblk0: mmc0:aaaa SC32G 29.7 GiB",
		"[    2.331000] Run /init as init process", "Feb 10 10:03:10 ubuntu snapd[412]: seeding the system",
		"\x1b[0;32m  OK  \x1b[0m Reached target Multi-User System."}
	stages := map[int]string{0: "bootloader", 2: "kernel", 5: "install-boot", 6: "seeding"}
	for i, l := range console {
		if st, ok := stages[i]; ok {
			out = append(out, ev(1500*time.Millisecond, lines.Event{Kind: lines.EventStage, Stage: st}))
		}
		out = append(out, ev(300*time.Millisecond, lines.Event{Kind: lines.EventLine, Text: l}))
		if reason == "kernel-panic" && i == 4 {
			out = append(out, ev(time.Second, lines.Event{Kind: lines.EventLine, Text: "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(179,2)"}),
				ev(0, lines.Event{Kind: lines.EventState, State: lines.StateFail, HWSerial: hw}),
				ev(0, lines.Event{Kind: lines.EventVerdict, State: lines.StateFail, HWSerial: hw, Reason: reason,
					Detail: "console: Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(179,2)"}))
			return out
		}
	}
	out = append(out, ev(2*time.Second, lines.Event{Kind: lines.EventState, State: lines.StateRegister, HWSerial: hw}),
		ev(1500*time.Millisecond, lines.Event{Kind: lines.EventState, State: lines.StatePass, HWSerial: hw, Serial: "ACME-" + hw[2:]}),
		ev(0, lines.Event{Kind: lines.EventVerdict, State: lines.StatePass, HWSerial: hw, Serial: "ACME-" + hw[2:]}))
	return out
}
