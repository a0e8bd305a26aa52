package lines_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/lines"
)

// TestMetricsConfig reads station.metrics.listen: absent is off, a
// host:port is kept, anything else is an error at the value's file:line.
func TestMetricsConfig(t *testing.T) {
	base, err := os.ReadFile("testdata/config/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The station section's lines 2-4; the metrics go on lines 5 and 6.
	const after = "  data-dir: /tmp/flashstation-min\n"
	if !strings.Contains(string(base), after) {
		t.Fatal("minimal.yaml changed: the test inserts after its data-dir")
	}
	name := filepath.Join("testdata", "config", "metrics.yaml") // relative paths resolve as minimal.yaml's
	for _, tc := range []struct {
		name    string
		metrics string // inserted after the data-dir line
		listen  string
		err     string // the error's beginning: file:line:col: path: message
	}{
		{name: "absent"},
		{name: "loopback", metrics: "  metrics: {listen: \"127.0.0.1:9464\"}\n", listen: "127.0.0.1:9464"},
		{name: "block", metrics: "  metrics:\n    listen: \":9464\"\n", listen: ":9464"},
		{name: "ipv6", metrics: "  metrics: {listen: \"[::1]:9464\"}\n", listen: "[::1]:9464"},
		{name: "host name", metrics: "  metrics: {listen: \"bench-7:9464\"}\n", listen: "bench-7:9464"},
		{name: "no port", metrics: "  metrics:\n    listen: 127.0.0.1\n",
			err: name + ":6:13: station.metrics.listen: want host:port"},
		{name: "port out of range", metrics: "  metrics: {listen: \"127.0.0.1:70000\"}\n",
			err: name + ":5:21: station.metrics.listen: port \"70000\" is not between 1 and 65535"},
		{name: "port zero", metrics: "  metrics: {listen: \"127.0.0.1:0\"}\n",
			err: name + ":5:21: station.metrics.listen: port \"0\" is not between"},
		{name: "bad host", metrics: "  metrics: {listen: \"a b:9464\"}\n",
			err: name + ":5:21: station.metrics.listen: \"a b\" is not a host name"},
		{name: "the proxy's port", metrics: "  metrics: {listen: \"0.0.0.0:8181\"}\n",
			err: name + ":5:21: station.metrics.listen: port 8181 is the recording proxy's of line l1 (lines[0].proxy.listen, line 14)"},
		{name: "not a string", metrics: "  metrics: {listen: [a]}\n",
			err: name + ":5:21: station.metrics.listen: want a string"},
		{name: "no listen", metrics: "  metrics: {}\n",
			err: name + ":5:12: station.metrics.listen: give host:port"},
		{name: "unknown field", metrics: "  metrics: {listen: \"127.0.0.1:9464\", port: 9464}\n",
			err: name + ":5:39: station.metrics.port: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := strings.Replace(string(base), after, after+tc.metrics, 1)
			st, problems := lines.Parse(name, []byte(data))
			errs := problems.Errors()
			if tc.err == "" {
				if len(errs) > 0 {
					t.Fatalf("problems: %v", errs)
				}
				if st.Metrics.Listen != tc.listen {
					t.Errorf("listen = %q, want %q", st.Metrics.Listen, tc.listen)
				}
				return
			}
			if len(errs) != 1 {
				t.Fatalf("want one error %q, got %d: %v", tc.err, len(errs), errs)
			}
			if got := errs[0].String(); !strings.HasPrefix(got, tc.err) {
				t.Errorf("error\n %s\nwant it to start with\n %s", got, tc.err)
			}
		})
	}
}
