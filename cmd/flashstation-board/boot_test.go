//go:build linux

package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/internal/armimage/seedconf"
)

func TestParseCmdline(t *testing.T) {
	p := parseCmdline("console=ttyAMA0 snapd_recovery_mode=run     snapd_recovery_system=20240210 flashstation.fault=seed-error flashstation.poweroff=1\n")
	want := cmdlineParams{Mode: seedconf.ModeRun, System: "20240210", Fault: seedconf.FaultSeedError, PowerOff: true}
	if p != want {
		t.Errorf("parseCmdline = %+v, want %+v", p, want)
	}
	if p := parseCmdline("console=ttyAMA0"); p.Fault != seedconf.FaultNone || p.Mode != "" || p.PowerOff {
		t.Errorf("no flags: %+v", p)
	}
}

// TestBootLinesCarryTheStationsMarkers checks the lines against the
// markers of the station's default UC20+ profile (spec boot-console.md),
// in order.
func TestBootLinesCarryTheStationsMarkers(t *testing.T) {
	var out bytes.Buffer
	b := newBoot(&out, cmdlineParams{Mode: seedconf.ModeInstall, System: "20240210"}, func() time.Time { return time.Date(2024, 2, 10, 10, 3, 24, 0, time.UTC) })
	b.installStart()
	b.installEnd()
	b.runBoot()
	b.seeding()
	b.ready(false, "10.0.2.15")
	text := out.String()
	at := 0
	for _, marker := range []string{"Installing the system, please wait for reboot", "Feb 10 10:03:24 ubuntu snapd[598]: handlers_install.go:204: create and deploy partitions", "request immediate system reboot", "Welcome to Ubuntu Core 22!", "Mount snap \"core22\" (1125)", "Mark system seeded", "Press enter to configure.\n"} {
		i := strings.Index(text[at:], marker)
		if i < 0 {
			t.Fatalf("no %q after byte %d in:\n%s", marker, at, text)
		}
		at += i + len(marker)
	}
	var failed bytes.Buffer
	newBoot(&failed, cmdlineParams{Mode: seedconf.ModeRun}, time.Now).seedError()
	for _, marker := range []string{"cannot run snapd from the seed", "error: cannot perform the following tasks:"} {
		if !strings.Contains(failed.String(), marker) {
			t.Errorf("seed error lacks %q:\n%s", marker, failed.String())
		}
	}
	if strings.Contains(failed.String(), "Mark system seeded") {
		t.Error("a seed error says the system seeded")
	}
}
