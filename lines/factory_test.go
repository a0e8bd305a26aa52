package lines_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/lines"
)

// TestFactoryLedgerConfig: station.ledger.url is a secret reference (the
// URL may hold a password), never the URL itself.
func TestFactoryLedgerConfig(t *testing.T) {
	base, err := os.ReadFile("testdata/config/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const after = "  data-dir: /tmp/flashstation-min\n"
	name := filepath.Join("testdata", "config", "ledger.yaml")
	t.Setenv("FLASHSTATION_TEST_LEDGER", "postgres://bench@db/flashstation")
	for _, tc := range []struct {
		name, ledger, env, err string
	}{
		{name: "absent"},
		{name: "env", ledger: "  ledger: {url: {env: FLASHSTATION_TEST_LEDGER}}\n", env: "FLASHSTATION_TEST_LEDGER"},
		{name: "the URL written in the file", ledger: "  ledger: {url: \"postgres://u:pw@db/f\"}\n",
			err: name + ":5:17: station.ledger.url: secrets are not written in the configuration"},
		{name: "no url", ledger: "  ledger: {}\n", err: name + ":5:11: station.ledger.url: give the factory ledger's PostgreSQL URL"},
		{name: "bad variable name", ledger: "  ledger: {url: {env: \"not a name\"}}\n", err: name + ":5:23: station.ledger.url.env: \"not a name\" is not an environment variable name"},
		{name: "unknown key", ledger: "  ledger: {url: {env: X}, dsn: y}\n", err: name + ":5:27: station.ledger.dsn: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := strings.Replace(string(base), after, after+tc.ledger, 1)
			st, problems := lines.Parse(name, []byte(data))
			errs := problems.Errors()
			if tc.err == "" {
				if len(errs) > 0 {
					t.Fatalf("problems: %v", errs)
				}
				if st.Ledger.URL.Env != tc.env || st.Ledger.IsSet() != (tc.env != "") {
					t.Errorf("ledger = %+v", st.Ledger)
				}
				return
			}
			if len(errs) != 1 || !strings.HasPrefix(errs[0].String(), tc.err) {
				t.Errorf("errors %v, want one starting %q", errs, tc.err)
			}
			for _, e := range errs {
				if strings.Contains(e.String(), "pw@") {
					t.Errorf("the error shows the secret: %s", e)
				}
			}
		})
	}
}
