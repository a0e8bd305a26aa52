package lines_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/lines"
)

var update = flag.Bool("update", false, "rewrite golden files")

// render gives problems as the command prints them, with the absolute
// repository path replaced so goldens hold on any clone.
func render(t *testing.T, ps lines.Problems) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(strings.ReplaceAll(p.String(), root, "$ROOT"))
		b.WriteByte('\n')
	}
	return b.String()
}

// TestProblemsGolden loads every file in testdata/config and compares the
// problems with NAME.golden (go test -run Golden -update rewrites them).
func TestProblemsGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/config/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, problems, err := lines.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				if p.Pos.Line < 1 || p.Pos.Col < 1 {
					t.Errorf("problem without a position: %v", p)
				}
				if p.File != file {
					t.Errorf("problem names file %q, want %q", p.File, file)
				}
			}
			got := render(t, problems)
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./lines -run Golden -update)", err)
			}
			if got != string(want) {
				t.Errorf("problems differ from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestMinimalDefaults(t *testing.T) {
	st, problems, err := lines.LoadValid("testdata/config/minimal.yaml")
	if err != nil {
		t.Fatalf("%v\n%v", err, problems)
	}
	if len(problems) != 0 {
		t.Errorf("unexpected warnings: %v", problems)
	}
	l := st.Lines[0]
	s := st.Slots[0]
	dir, _ := filepath.Abs("testdata/config")
	for _, c := range []struct{ name, got, want string }{
		{"line name", l.Name, "l1"},
		{"capture", l.Capture.Method, lines.CaptureProxy},
		{"profile", l.Boot.Profile, lines.DefaultProfile},
		{"trigger", l.Boot.Trigger, lines.TriggerManual},
		{"partition", l.Fastboot.Partition, "mmc0"},
		{"pass tray", l.Trays.Pass, lines.DefaultPassTray},
		{"reject tray", l.Trays.Reject, lines.DefaultRejectTray},
		{"api-key file", l.Vault.APIKey.File, filepath.Join(dir, "api.key")},
		{"model", l.Model, filepath.Join(filepath.Dir(dir), "..", "..", "configs", "assets", "acme-gw-armhf.model")},
	} {
		if filepath.Clean(c.got) != filepath.Clean(c.want) {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if s.Console.Baud != 115200 || s.Power != nil || s.Disabled {
		t.Errorf("slot defaults wrong: %+v", s)
	}
	key, err := l.Vault.APIKey.Resolve()
	if err != nil || key.Reveal() != "not-a-real-key" {
		t.Errorf("api key = %v, %v", key, err)
	}
}

func TestLoadValidRefusesErrors(t *testing.T) {
	st, problems, err := lines.LoadValid("testdata/config/broken.yaml")
	if err == nil || st != nil {
		t.Fatal("broken config accepted")
	}
	if len(problems) < 10 {
		t.Errorf("want every problem, got %d", len(problems))
	}
	if !strings.Contains(err.Error(), "broken.yaml:19:16: lines[0].boot.trigger") {
		t.Errorf("error does not list problems with positions:\n%v", err)
	}
	if _, _, err := lines.Load("testdata/config/does-not-exist.yaml"); err == nil {
		t.Error("missing file accepted")
	}
}

// TestExampleConfigs loads every station file shipped in configs/.
func TestExampleConfigs(t *testing.T) {
	files, _ := filepath.Glob("../configs/*.yaml")
	if len(files) == 0 {
		t.Fatal("no station files in configs/")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			st, problems, err := lines.LoadValid(f)
			if err != nil {
				t.Fatalf("%v", err)
			}
			for _, w := range problems {
				if !strings.Contains(w.Msg, "environment variable") {
					t.Errorf("unexpected warning: %v", w)
				}
			}
			if len(st.Lines) == 0 || len(st.Slots) == 0 {
				t.Errorf("%s: %d lines, %d slots", f, len(st.Lines), len(st.Slots))
			}
		})
	}
}

func TestStationExample(t *testing.T) {
	t.Setenv("FLASHSTATION_LINE1_API_KEY", "k1")
	t.Setenv("FLASHSTATION_LINE2_API_KEY", "k2")
	t.Setenv("FLASHSTATION_LINE2_CONSOLE_PASSWORD", "pw")
	t.Setenv("FLASHSTATION_LEDGER_URL", "postgres://bench-01@factory-db/flashstation")
	st, problems, err := lines.LoadValid("../configs/station.example.yaml")
	if err != nil || len(problems) != 0 {
		t.Fatalf("%v %v", err, problems)
	}
	if len(st.Lines) != 2 || len(st.Slots) != 8 {
		t.Fatalf("want 2 lines and 8 slots, got %d and %d", len(st.Lines), len(st.Slots))
	}
	// A2 inherits from A1 through a YAML merge key and overrides its ports.
	a2 := st.Slots[1]
	if a2.ID != "A2" || a2.Line != "line1" || a2.Method != lines.MethodUMS ||
		strings.Join(a2.USBPorts, ",") != "1-1.1.2,2-1.1.2" || a2.Power == nil || a2.Power.Port != 2 || a2.Console.Baud != 115200 {
		t.Errorf("A2 = %+v (power %+v)", a2, a2.Power)
	}
	if got := len(st.SlotsOf("line2")); got != 4 {
		t.Errorf("line2 has %d slots", got)
	}
	l2, ok := st.LineByID("line2")
	if !ok || l2.Capture.Method != lines.CaptureConsole || l2.Boot.Trigger != lines.TriggerFastbootReboot {
		t.Errorf("line2 = %+v", l2)
	}
	pw, err := l2.Capture.Password.Resolve()
	if err != nil || pw.Reveal() != "pw" {
		t.Errorf("password = %v %v", pw, err)
	}
}

func TestSecretRefResolve(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "k")
	empty := filepath.Join(dir, "e")
	os.WriteFile(good, []byte("  topsecret\n"), 0o600)
	os.WriteFile(empty, []byte("\n"), 0o600)
	t.Setenv("FS_TEST_SECRET", "envsecret")
	t.Setenv("FS_TEST_EMPTY", "")
	for _, tc := range []struct {
		ref  lines.SecretRef
		want string
		err  string
	}{
		{lines.SecretRef{File: good}, "topsecret", ""},
		{lines.SecretRef{Env: "FS_TEST_SECRET"}, "envsecret", ""},
		{lines.SecretRef{File: empty}, "", "is empty"},
		{lines.SecretRef{Env: "FS_TEST_EMPTY"}, "", "is empty"},
		{lines.SecretRef{Env: "FS_TEST_UNSET_XYZ"}, "", "not set"},
		{lines.SecretRef{File: filepath.Join(dir, "none")}, "", "no such file"},
		{lines.SecretRef{}, "", "no secret source"},
	} {
		v, err := tc.ref.Resolve()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err = %v, want %q", tc.ref, err, tc.err)
			}
			continue
		}
		if err != nil || v.Reveal() != tc.want {
			t.Errorf("%v: got %v %v", tc.ref, v.Reveal(), err)
		}
		if strings.Contains(tc.ref.String(), tc.want) {
			t.Errorf("String() shows the secret")
		}
	}
}
