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
		{"unknown key", "base: uc20\nstagez: []\n", `profile:2:1: unknown field "stagez"`},
		{"unknown base", "base: uc99\n", `profile:1:7: base: "uc99" is not a built-in profile`},
		{"unknown stage", "base: uc20\nstages: [{name: kernel}]\n", `profile:2:17: stages[0].name: base uc20 has no stage "kernel"`},
		{"no name", "base: uc20\nstages:\n  - timeout: 3m\n", `profile:3:5: stages[0].name: name required`},
		{"bad regexp", "base: uc20\nstages: [{name: seeding, markers: [\"(\"]}]\n", `profile:2:36: stages[0].markers[0]: "(": error parsing regexp: missing closing )`},
		{"bad fail pattern", "base: uc20\nfail-on:\n  - {pattern: \"[\"}\n", `profile:3:15: fail-on[0].pattern: "[": error parsing regexp: missing closing ]`},
		{"bad duration", "base: uc20\nwhole-boot: soon\n", `profile:2:13: whole-boot: "soon" is not a duration`},
		{"bad stage timeout", "base: uc20\nstages:\n  - name: seeding\n    timeout: -1m\n", `profile:4:14: stages[0].timeout: "-1m" is not a duration`},
		{"no stages", "name: x\n", "profile:1:1: a profile without a base needs stages"},
		{"empty", "", "profile: a profile without a base needs stages"},
		{"twice", "stages: [{name: a, markers: [x]}, {name: a, markers: [y]}]\n", `profile:1:42: stages[1].name: stage "a" listed twice`},
		{"no markers", "stages: [{name: a}]\n", `profile:1:10: stages[0]: stage "a" has no markers`},
		{"optional last", "stages: [{name: a, markers: [x], optional: true}]\n", "profile:1:44: stages[0].optional: the last stage (a) cannot be optional"},
		{"syntax", "base: [\n", "profile:1:7: "},
		{"two documents", "base: uc20\n---\nbase: uc22\n", "profile:3:1: only one YAML document is allowed"},
		{"too deep", "base: uc20\nx: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n", "profile:2:67: the boot profile nests deeper than 64 levels"},
		{"too large", "base: uc20\n" + strings.Repeat("# padding\n", 30000), "profile: the boot profile is 300011 bytes, over the 256 KiB limit"},
		{"alias bomb", laughs, "profile:8:9: aliases expand to more than 100000 nodes (at alias *e)"},
		// Found by FuzzParseProfile: goccy/go-yaml 1.19.2 dereferences nil
		// decoding a tagged scalar where a list is expected.
		{"library crash", "A: 0\nstages:\n  ! 0\n00000008: 0", "profile: "},
	} {
		_, err := console.ParseProfile([]byte(tc.doc))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %s...", tc.name, err, tc.want)
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

// laughs is a billion-laughs profile: nine levels of nine aliases each.
var laughs = func() string {
	var b strings.Builder
	b.WriteString("base: uc20\ninstall-markers:\n  - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	prev := "a"
	for _, c := range "bcdefghi" {
		b.WriteString("  - &" + string(c) + " [" + strings.TrimSuffix(strings.Repeat("*"+prev+", ", 9), ", ") + "]\n")
		prev = string(c)
	}
	return b.String()
}()

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

// FuzzParseProfile: profile files never panic the loader, every error
// names the file, and an accepted profile ends with a stage that is not
// optional.
func FuzzParseProfile(f *testing.F) {
	files, _ := filepath.Glob("../configs/profiles/*.yaml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("stages: [{name: a, markers: [x]}]\n"))
	f.Add([]byte("base: uc20\nx: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n"))
	f.Add([]byte(laughs))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := console.ParseProfileFile("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(p.Stages) == 0 || p.Stages[len(p.Stages)-1].Optional {
			t.Fatalf("accepted profile %+v", p)
		}
	})
}

// TestLoadProfileFile: errors about a profile file name it, with the line
// where it is known.
func TestLoadProfileFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	crash := write("crash.yaml", "A: 0\nstages:\n  ! 0\n00000008: 0")
	big := write("big.yaml", "base: uc20\n"+strings.Repeat("#", console.MaxProfileBytes))
	bad := write("bad.yaml", "base: uc20\nwhole-boot: soon\n")
	for _, tc := range []struct{ file, want string }{
		{crash, "boot profile: " + crash + ": "},
		{big, big + ": the boot profile is 262155 bytes, over the 256 KiB limit"},
		{bad, "boot profile: " + bad + `:2:13: whole-boot: "soon" is not a duration`},
		{filepath.Join(dir, "none.yaml"), "read boot profile: open " + filepath.Join(dir, "none.yaml")},
	} {
		_, err := console.LoadProfile(tc.file)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %s...", filepath.Base(tc.file), err, tc.want)
		}
	}
}
