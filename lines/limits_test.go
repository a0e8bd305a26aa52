package lines_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/lines"
)

// station is a valid station file with n slots that share the first one's
// line and method through a merge key; it names its assets relative to
// testdata/config.
func station(n int) string {
	var b strings.Builder
	b.WriteString(`station: {id: bench, data-dir: data}
lines:
  - id: l1
    model: ../../../configs/assets/acme-gw-armhf.model
    brand-keys: [../../../configs/assets/acme-brand-key.pub]
    image: {file: ../../../configs/assets/acme-gw-armhf.img.xz}
    vault: {url: "http://vault/v1/", api-key: {file: api.key}}
    proxy: {listen: "127.0.0.1:8181"}
slots:
`)
	for i := range n {
		slot := "<<: *slot"
		if i == 0 {
			b.WriteString("  - &slot ")
			slot = "line: l1, method: ums"
		} else {
			b.WriteString("  - ")
		}
		fmt.Fprintf(&b, "{%s, id: s%d, usb-ports: [\"%d-%d.%d\"], console: {port: /dev/ttyUSB%d}}\n", slot, i, i/65536+1, i/256%256, i%256, i)
	}
	return b.String()
}

// TestParseBounds: what is over a bound is one problem at its place, found
// before the library builds a tree.
func TestParseBounds(t *testing.T) {
	name := "testdata/config/bounds.yaml"
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"deep flow", "station: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n",
			name + ":1:73: the station file nests deeper than 64 levels"},
		{"deep blocks", "station:\n" + func() string {
			var b strings.Builder
			for i := 1; i <= 100; i++ {
				b.WriteString(strings.Repeat(" ", i) + "a:\n")
			}
			return b.String()
		}(), name + ":65:65: the station file nests deeper than 64 levels"},
		{"deep lists", "slots:\n  " + strings.Repeat("- ", 100000) + "x\n", name + ":2:129: the station file nests deeper than 64 levels"},
		{"alias bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
			"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nstation: *e\n",
			name + ":5:36: aliases expand to more than 100000 nodes (at alias *d)"},
		{"recursive alias", "station: &s {id: *s}\n", name + ":1:18: alias *s is inside its own anchor (a recursive structure)"},
		{"too large", station(1) + strings.Repeat("# padding to over a MiB\n", 1<<16),
			fmt.Sprintf("%s:1:1: the station file is %d bytes, over the 1 MiB limit", name, len(station(1))+24<<16)},
		// FuzzParseProfile's crasher is only a syntax error for the walker.
		{"tagged scalar", "A: 0\nstages:\n  ! 0\n00000008: 0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, problems := lines.Parse(name, []byte(tc.doc))
			if st == nil {
				t.Fatal("nil station")
			}
			if tc.want == "" {
				if len(problems.Errors()) == 0 {
					t.Error("no problem")
				}
				return
			}
			if len(problems) != 1 || problems[0].String() != tc.want {
				t.Errorf("got %v, want %s", problems, tc.want)
			}
		})
	}
}

// TestLoadBounds: files that are too large, and files the station file
// names that could stall the check (devices, huge files, a profile that
// crashes the YAML library), are refused with the place that names them.
func TestLoadBounds(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	big := write("big.yaml", strings.Repeat("# x\n", lines.MaxStationBytes))
	if _, _, err := lines.Load(big); err == nil || err.Error() != big+": the station file is 4194304 bytes, over the 1 MiB limit" {
		t.Errorf("big file: %v", err)
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		if _, _, err := lines.Load("/dev/zero"); err == nil || err.Error() != "/dev/zero: the station file is larger than the 1 MiB limit" {
			t.Errorf("/dev/zero: %v", err)
		}
	}

	assets, _ := filepath.Abs("../configs/assets")
	write("api.key", "k\n")
	write("crash.yaml", "A: 0\nstages:\n  ! 0\n00000008: 0")
	write("huge.key", strings.Repeat("k", 65<<10))
	base := strings.ReplaceAll(station(1), "../../../configs/assets", assets)
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"profile that crashes the YAML library", `proxy: {listen: "127.0.0.1:8181"}`, `proxy: {listen: "127.0.0.1:8181"}` + "\n    boot: {profile: crash.yaml}",
			":9:21: lines[0].boot.profile: boot profile: " + filepath.Join(dir, "crash.yaml") + ": cannot read this YAML: the YAML library failed ("},
		{"model that is a device", "model: " + assets + "/acme-gw-armhf.model", "model: /dev/zero",
			":4:12: lines[0].model: /dev/zero is not a regular file"},
		{"huge secret file", "api-key: {file: api.key}", "api-key: {file: huge.key}",
			":7:54: lines[0].vault.api-key.file: " + filepath.Join(dir, "huge.key") + " is 66560 bytes, over the 64 KiB a file of this kind may have"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.from) {
				t.Fatalf("station has no %q", tc.from)
			}
			path := write("station.yaml", strings.Replace(base, tc.from, tc.to, 1))
			_, problems, err := lines.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			errs := problems.Errors()
			if len(errs) != 1 || !strings.HasPrefix(errs[0].String(), path+tc.want) {
				t.Errorf("got %v, want %s%s...", problems, path, tc.want)
			}
		})
	}
}

// TestManySlots: a station file of thousands of slots that share their
// settings through a merge key loads with every slot.
func TestManySlots(t *testing.T) {
	st, problems := lines.Parse("testdata/config/many.yaml", []byte(station(5000)))
	if errs := problems.Errors(); len(errs) > 0 {
		t.Fatalf("%d errors, the first: %v", len(errs), errs[0])
	}
	if len(st.Slots) != 5000 || st.Slots[4999].ID != "s4999" || st.Slots[4999].Line != "l1" || st.Slots[4999].Method != lines.MethodUMS {
		t.Errorf("%d slots, the last %+v", len(st.Slots), st.Slots[len(st.Slots)-1])
	}
}

// BenchmarkParseMaxSize parses station files of a quarter, half and all
// of MaxStationBytes whose every slot has problems (a missing console port,
// a line that is not defined, a duplicate id), the work of config check on
// the largest file it accepts. Time per byte stays flat as the size
// doubles: the checks are linear.
func BenchmarkParseMaxSize(b *testing.B) {
	for _, frac := range []int{4, 2, 1} {
		var doc strings.Builder
		doc.WriteString(station(0))
		for i := 0; doc.Len() < lines.MaxStationBytes/frac-100; i++ {
			fmt.Fprintf(&doc, "  - {id: s%d, line: l%d, usb-ports: [\"1-1.%d\"], method: ums}\n", i%1000, i%3, i%200)
		}
		data := []byte(doc.String())
		b.Run(fmt.Sprintf("%dKiB", len(data)>>10), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				_, problems := lines.Parse("testdata/config/max.yaml", data)
				if len(problems) < 1000 {
					b.Fatalf("%d problems", len(problems))
				}
			}
		})
	}
}
