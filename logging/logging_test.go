package logging_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/logging"
	"github.com/flashstation/flashstation/secret"
)

func TestOpenWritesJSONLinesAndRedacts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	log, c, err := logging.Open(dir, "debug")
	if err != nil {
		t.Fatal(err)
	}
	key := secret.New("very-secret-key")
	log.Debug().Str("slot", "A1").Msg("probe")
	log.Info().Interface("api_key", key).Stringer("key2", key).Msg("vault configured")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, logging.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "very-secret-key") {
			t.Errorf("secret leaked into log: %s", sc.Text())
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2", len(lines))
	}
	if lines[0]["slot"] != "A1" || lines[0]["level"] != "debug" || lines[0]["time"] == nil {
		t.Errorf("first line = %v", lines[0])
	}
	if lines[1]["api_key"] != secret.Redacted || lines[1]["key2"] != secret.Redacted {
		t.Errorf("second line = %v", lines[1])
	}
}

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want string
	}{
		{"", true, "info"}, {"debug", true, "debug"}, {" WARN ", true, "warn"}, {"error", true, "error"}, {"loud", false, ""},
	} {
		lvl, err := logging.ParseLevel(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseLevel(%q) err = %v", tc.in, err)
			continue
		}
		if tc.ok && lvl.String() != tc.want {
			t.Errorf("ParseLevel(%q) = %v, want %s", tc.in, lvl, tc.want)
		}
	}
}
