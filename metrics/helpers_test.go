package metrics_test

import (
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// families are metric families by name, gathered or scraped.
type families map[string]*dto.MetricFamily

func gather(t *testing.T, g prometheus.Gatherer) families {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := families{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// scrape GETs url and parses the text format.
func scrape(t *testing.T, url string) families {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s: %s", resp.Status, body)
	}
	return parse(t, string(body))
}

func parse(t *testing.T, text string) families {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return families(mfs)
}

// labels is "k=v,k=v", sorted by key ("" for none).
func labels(m *dto.Metric) string {
	var kv []string
	for _, l := range m.GetLabel() {
		kv = append(kv, l.GetName()+"="+l.GetValue())
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// value is the sample of name with exactly these labels: a counter's or
// a gauge's value, or for NAME_count and NAME_sum a histogram's; ok is
// false when there is none.
func (fs families) value(name, lbls string) (float64, bool) {
	base, part := name, ""
	for _, suffix := range []string{"_count", "_sum"} {
		if b, ok := strings.CutSuffix(name, suffix); ok && fs[name] == nil && fs[b] != nil {
			base, part = b, suffix
		}
	}
	mf := fs[base]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if labels(m) != lbls {
			continue
		}
		switch {
		case part == "_count":
			return float64(m.GetHistogram().GetSampleCount()), true
		case part == "_sum":
			return m.GetHistogram().GetSampleSum(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// want is one expected sample: labels "k=v,..." sorted by key.
type want struct {
	name, labels string
	value        float64
}

func (fs families) check(t *testing.T, wants []want) {
	t.Helper()
	for _, w := range wants {
		got, ok := fs.value(w.name, w.labels)
		if !ok {
			t.Errorf("%s{%s}: absent, want %g", w.name, w.labels, w.value)
		} else if got != w.value {
			t.Errorf("%s{%s} = %g, want %g", w.name, w.labels, got, w.value)
		}
	}
}

// series counts the samples of a family.
func (fs families) series(name string) int {
	if mf := fs[name]; mf != nil {
		return len(mf.GetMetric())
	}
	return 0
}
