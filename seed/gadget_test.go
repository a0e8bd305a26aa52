package seed

import (
	"strings"
	"testing"
)

func TestParseQuantity(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"1200M", 1200 << 20, false},
		{"1G", 1 << 30, false},
		{"440", 440, false},
		{"64K", 64 << 10, false},
		{" 8M ", 8 << 20, false},
		{"-1", 0, true},
		{"1T", 0, true},
		{"M", 0, true},
		{"99999999999999999G", 0, true},
	} {
		got, err := parseQuantity(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("parseQuantity(%q) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestParseGadgetYAML(t *testing.T) {
	vols, err := parseGadgetYAML([]byte(`volumes:
  pi:
    schema: mbr
    bootloader: u-boot
    structure:
      - type: 0C
        filesystem: vfat
        filesystem-label: system-boot
        size: 256M
      - name: ubuntu-seed
        role: system-seed
        type: 0C,C12A7328-F81F-11D2-BA4B-00A0C93EC93B
        offset: 1M
        size: 1200M
`))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := vols["pi"]
	if !ok || v.Schema != "mbr" || v.Bootloader != "u-boot" || len(v.Structure) != 2 {
		t.Fatalf("volumes = %+v", vols)
	}
	if s := v.Structure[0]; s.Role != roleBoot || s.Offset != -1 || s.Size != 256<<20 || s.Label != "system-boot" {
		t.Errorf("structure 0 = %+v; want the system-boot role from its label, no offset, 256M", s)
	}
	if s := v.Structure[1]; s.Offset != 1<<20 || s.Size != 1200<<20 || s.Role != roleSeed {
		t.Errorf("structure 1 = %+v", s)
	}
	for _, bad := range []struct{ doc, want string }{
		{"volumes: {}\n", "no volumes"},
		{"volumes:\n  v:\n    structure:\n      - size: 12Q\n", "not a size"},
		{"volumes: [\n", "meta/gadget.yaml"},
		{"a: &a [*a]\n", "meta/gadget.yaml"},
	} {
		_, err := parseGadgetYAML([]byte(bad.doc))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("parseGadgetYAML(%q) = %v; want an error with %q", bad.doc, err, bad.want)
		}
	}
}

// FuzzGadgetYAML: any meta/gadget.yaml gives volumes or an error, within
// the bounds, never a panic.
func FuzzGadgetYAML(f *testing.F) {
	f.Add([]byte("volumes:\n  pi:\n    schema: gpt\n    structure:\n      - name: ubuntu-seed\n        role: system-seed\n        size: 1200M\n"))
	f.Add([]byte("volumes:\n  v:\n    structure: [{type: bare, size: 1M}, {type: mbr, size: 440}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		vols, err := parseGadgetYAML(data)
		if err != nil {
			return
		}
		if len(vols) == 0 || len(vols) > maxVolumes {
			t.Fatalf("%d volumes passed", len(vols))
		}
		for _, v := range vols {
			if len(v.Structure) > maxStructures {
				t.Fatalf("%d structures passed", len(v.Structure))
			}
			for _, s := range v.Structure {
				if s.Size < 0 || s.Offset < -1 {
					t.Fatalf("structure %+v", s)
				}
			}
		}
	})
}
