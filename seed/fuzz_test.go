package seed_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/flashstation/flashstation/internal/seedimage"
	"github.com/flashstation/flashstation/seed"
)

var (
	baseOnce   sync.Once
	baseImages [2][]byte
	baseErr    error
)

// fuzzBases are two real images built with Debian's tools: a UC20+ GPT
// seed and a UC16/18 MBR one, with their gadget snaps.
func fuzzBases(tb testing.TB) [2][]byte {
	tb.Helper()
	if err := seedimage.Available(); err != nil {
		tb.Skip(err)
	}
	baseOnce.Do(func() {
		dir, err := os.MkdirTemp("", "seed-fuzz-")
		if err != nil {
			baseErr = err
			return
		}
		defer os.RemoveAll(dir)
		model := func(name string) []byte {
			b, err := os.ReadFile(assertionsDir + name)
			if err != nil {
				baseErr = err
			}
			return b
		}
		specs := [2]seedimage.Spec{
			{Model: model("10-model-acme-uc22.txt"), Gadget: &seedimage.Gadget{Name: "acme-gadget"}, Size: 12 << 20},
			{Kind: seedimage.KindUC16, Table: "mbr", Model: model("09-model-uc18-pi2.real.txt"), Gadget: &seedimage.Gadget{Name: "pi"}, Size: 20 << 20},
		}
		for i, s := range specs {
			p := filepath.Join(dir, "base.img")
			if baseErr = seedimage.Build(context.Background(), p, s); baseErr != nil {
				return
			}
			if baseImages[i], baseErr = os.ReadFile(p); baseErr != nil {
				return
			}
		}
	})
	if baseErr != nil {
		tb.Fatal(baseErr)
	}
	return baseImages
}

// FuzzRead patches a real image's bytes (its partition table, file system
// headers, directories, assertion files, the gadget squashfs) and reads
// it as the gate does, in the reader's bounded child: it answers an Image
// (or an error), and the gate's check of what it found never panics nor
// passes.
func FuzzRead(f *testing.F) {
	bases := fuzzBases(f)
	// The MBR, the GPT header and entries, the first file system's boot
	// sector, its FAT and its root directory.
	for i, off := range []uint32{446, 512, 1024, 1 << 20, 1<<20 + 11, 1<<20 + 512, 1<<20 + 4096} {
		f.Add(i%2 == 1, off, []byte{0xff, 0xff, 0xff, 0xff})
	}
	f.Add(false, uint32(len(bases[0])-512), []byte("EFI PART"))
	f.Fuzz(func(t *testing.T, uc16 bool, off uint32, patch []byte) {
		base := bases[0]
		if uc16 {
			base = bases[1]
		}
		img := append([]byte(nil), base...)
		if len(patch) > 4096 {
			patch = patch[:4096]
		}
		at := int(off % uint32(len(img)))
		copy(img[at:], patch)
		// The reader's child, as the gate runs it: a file system that
		// loops or allocates without end ends in its bounds, not here.
		path := filepath.Join(t.TempDir(), "fuzz.img")
		if err := os.WriteFile(path, img, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := seed.ReadIsolated(context.Background(), path)
		if err != nil {
			return
		}
		if got == nil {
			t.Fatal("no image and no error")
		}
		if s := got.Seed; s != nil {
			if s.Kind != seed.KindUC20 && s.Kind != seed.KindUC16 {
				t.Fatalf("seed kind %q", s.Kind)
			}
			if len(s.ModelBytes) > 1<<20 {
				t.Fatalf("a model of %d bytes read", len(s.ModelBytes))
			}
		}
		v := seed.Check(got, seed.Expect{})
		if v.Pass {
			t.Fatal("an image passed a line with no model and no keys")
		}
	})
}

// TestReadIsolatedBounds: a FAT whose cluster chain comes back on itself
// (one byte of the table changed: the library follows it without end) is
// read in the bounded child, which runs out of its memory: the image is
// refused as unreadable, and the station goes on.
func TestReadIsolatedBounds(t *testing.T) {
	if testing.Short() {
		t.Skip("the reader's child allocates up to its bound")
	}
	bases := fuzzBases(t)
	img := append([]byte(nil), bases[0]...)
	img[1<<20+520] = 4 // the FAT's entry of the model's first cluster points at itself
	path := filepath.Join(t.TempDir(), "loop.img")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := seed.ReadIsolated(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Failed == "" {
		t.Fatalf("the child read the looping FAT: %+v", got)
	}
	v := seed.Check(got, seed.Expect{})
	if v.Pass || v.Cause != seed.CauseUnreadable || !strings.Contains(v.Problems[0].Text, "could not be read") {
		t.Errorf("verdict %+v, want %s", v, seed.CauseUnreadable)
	}
	t.Logf("refused: %s", v.Problems[0].Text)
	// The same image read in this process would not come back: the
	// undamaged one does, in the child too.
	ok := filepath.Join(t.TempDir(), "ok.img")
	if err := os.WriteFile(ok, bases[0], 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := seed.ReadIsolated(context.Background(), ok); err != nil || got.Seed == nil || got.Seed.Model == nil || len(got.Seed.ModelBytes) == 0 {
		t.Fatalf("the undamaged image through the child: %+v, %v", got, err)
	}
}

// TestReadMatchesDebianTools reads built images with the reader and with
// Debian's own tools (seedimage.Inspect): the partitions, the seed label,
// the model bytes and the gadget's hooks agree.
func TestReadMatchesDebianTools(t *testing.T) {
	if err := seedimage.Available(); err != nil {
		t.Skip(err)
	}
	acme := readShared(t, "10-model-acme-uc22.txt")
	pi2 := readShared(t, "09-model-uc18-pi2.real.txt")
	for _, tc := range []struct {
		name string
		spec seedimage.Spec
	}{
		{"uc20 gpt", seedimage.Spec{Model: acme, Gadget: &seedimage.Gadget{Name: "acme-gadget"}, Snaps: []string{"pi-kernel", "core22"}, Label: "20261201"}},
		{"uc20 mbr", seedimage.Spec{Table: "mbr", Model: acme, Gadget: &seedimage.Gadget{Name: "acme-gadget"}}},
		{"uc16 mbr", seedimage.Spec{Kind: seedimage.KindUC16, Table: "mbr", Model: pi2, Gadget: &seedimage.Gadget{Name: "pi", Hooks: []string{"configure", "prepare-device"}}}},
		{"uc16 gpt", seedimage.Spec{Kind: seedimage.KindUC16, Model: pi2, Gadget: &seedimage.Gadget{Name: "pi"}, Extra: []seedimage.Region{{Name: "data.bin", File: true, Size: 3 << 20}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "img")
			if err := seedimage.Build(context.Background(), path, tc.spec); err != nil {
				t.Fatal(err)
			}
			got, err := seed.Read(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			want, err := seedimage.Inspect(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			if got.Table != want.Table || len(got.Partitions) != len(want.Partitions) {
				t.Fatalf("table %s with %d partitions, Debian's tools read %s with %d", got.Table, len(got.Partitions), want.Table, len(want.Partitions))
			}
			for i, p := range got.Partitions {
				w := want.Partitions[i]
				if p.Index != w.Index || p.Start != w.Start || p.Size != w.Size || p.FileSystem != w.FileSystem || p.Label != w.Label || p.Name != w.Name || p.Type != w.Type {
					t.Errorf("partition %d: %+v, Debian's tools: %+v", i+1, p, w)
				}
			}
			s, ws := got.Seed, want.Seed
			if s == nil || ws == nil {
				t.Fatalf("seed %+v (%s), Debian's tools %+v", s, got.SeedErr, ws)
			}
			if s.Kind != ws.Kind || s.Label != ws.Label || s.Partition != ws.Partition || string(s.ModelBytes) != string(tc.spec.Model) {
				t.Errorf("seed %s %q on %d, Debian's tools %s %q on %d; model bytes equal: %v", s.Kind, s.Label, s.Partition, ws.Kind, ws.Label, ws.Partition, string(s.ModelBytes) == string(tc.spec.Model))
			}
			if s.Gadget == nil || ws.Gadget == nil {
				t.Fatalf("gadget %+v (%s), Debian's tools %+v", s.Gadget, s.GadgetErr, ws.Gadget)
			}
			if s.Gadget.Name != ws.Gadget.Name || !slicesEqual(s.Gadget.Hooks, ws.Gadget.Hooks) || len(s.Gadget.Volumes) != len(ws.Gadget.Volumes) {
				t.Errorf("gadget %+v, Debian's tools %+v", s.Gadget, ws.Gadget)
			}
		})
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
