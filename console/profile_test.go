package console_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/console"
)

func TestProfileFiles(t *testing.T) {
	p, err := console.ParseProfile([]byte(`
name: acme-slow-emmc
base: uc22
whole-boot: 45m
stages:
  - name: seeding
    timeout: 40m
  - name: console-ready
    markers: ["ACME gateway ready"]
fail-on:
  - {pattern: "Oops: ", reason: kernel-oops}
`))
	if err != nil {
		t.Fatal(err)
	}
	seeding, _ := p.Stage("seeding")
	if p.Name != "acme-slow-emmc" || p.WholeBoot != 45*time.Minute || seeding.Timeout != 40*time.Minute || len(p.Stages) != 5 {
		t.Errorf("%+v", p)
	}
	m := console.NewMachine(p, t0)
	m.Feed(t0.Add(time.Second), []byte("Installing the system\r\nACME gateway ready\r\n"))
	if !m.Verdict().Passed {
		t.Errorf("override marker: %+v", m.Verdict())
	}
	m = console.NewMachine(p, t0)
	m.Feed(t0.Add(time.Second), []byte("Installing the system\r\n[ 3.1] Oops: 17 [#1] SMP ARM\r\n"))
	if v := m.Verdict(); v.Reason != "kernel-oops" {
		t.Errorf("added fail pattern: %+v", v)
	}

	whole, err := console.ParseProfile([]byte(`
name: minimal
stages:
  - {name: kernel, markers: ["Linux version"], optional: true, timeout: 1m}
  - {name: ready, markers: ["READY"], timeout: 2m}
`))
	if err != nil || len(whole.Stages) != 2 || !whole.Stages[0].Optional {
		t.Fatalf("%+v %v", whole, err)
	}

	for _, tc := range []struct{ name, doc, want string }{
		{"unknown key", "base: uc20\nstagez: []\n", "unknown field"},
		{"unknown base", "base: uc99\n", "not a built-in"},
		{"unknown stage", "base: uc20\nstages: [{name: kernel}]\n", "no stage \"kernel\""},
		{"bad regexp", "base: uc20\nstages: [{name: seeding, markers: [\"(\"]}]\n", "missing closing"},
		{"bad duration", "base: uc20\nwhole-boot: soon\n", "not a duration"},
		{"no stages", "name: x\n", "needs stages"},
		{"optional last", "stages: [{name: a, markers: [x], optional: true}]\n", "cannot be optional"},
		{"syntax", "base: [\n", "["},
	} {
		if _, err := console.ParseProfile([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := console.LoadProfile("uc99"); err == nil {
		t.Error("unknown built-in accepted")
	}
	for _, n := range console.BuiltinProfiles {
		if _, err := console.LoadProfile(n); err != nil {
			t.Error(err)
		}
	}
}

// TestShippedProfiles loads every profile in configs/profiles.
func TestShippedProfiles(t *testing.T) {
	files, _ := filepath.Glob("../configs/profiles/*.yaml")
	if len(files) == 0 {
		t.Fatal("no profiles in configs/profiles")
	}
	for _, f := range files {
		if _, err := console.LoadProfile(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// FuzzParseProfile: profile files never panic the loader, and an accepted
// profile ends with a stage that is not optional.
func FuzzParseProfile(f *testing.F) {
	files, _ := filepath.Glob("../configs/profiles/*.yaml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("stages: [{name: a, markers: [x]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := console.ParseProfile(data)
		if err != nil {
			return
		}
		if len(p.Stages) == 0 || p.Stages[len(p.Stages)-1].Optional {
			t.Fatalf("accepted profile %+v", p)
		}
	})
}
