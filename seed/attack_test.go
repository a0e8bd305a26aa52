package seed_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/internal/seedimage"
	"github.com/flashstation/flashstation/seed"
)

// TestCraftedImagesRefused: images made to pass the gate while a board
// would boot something else (an attacker's reading of the reader). Each
// starts from a good image of the line's model and is refused with its
// cause; the good image passes.
func TestCraftedImagesRefused(t *testing.T) {
	if err := seedimage.Available(); err != nil {
		t.Skip(err)
	}
	_, brand, _ := testKeys(t)
	line := signModel(t, brand, "acme", "acme-gw-armhf", nil)
	want := seed.Expect{Model: decodeModel(t, line), Keys: ring(t, brand.Public())}
	good := seedimage.Spec{Model: line, Gadget: &seedimage.Gadget{Name: "acme-gadget"}, Snaps: []string{"pi-kernel", "core22"}}
	run := func(t *testing.T, name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	patch := func(t *testing.T, img string, off int64, b []byte) {
		t.Helper()
		f, err := os.OpenFile(img, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	mbrEntry := func(typ byte, start, size uint32) []byte {
		e := make([]byte, 16)
		e[4] = typ
		for i := 0; i < 4; i++ {
			e[8+i], e[12+i] = byte(start>>(8*i)), byte(size>>(8*i))
		}
		return e
	}
	for _, tc := range []struct {
		name  string
		spec  seedimage.Spec
		craft func(t *testing.T, img string)
		cause string // "" passes
		text  string
	}{
		{name: "the good image passes", spec: good},
		{name: "a plain MBR beside the GPT", spec: good, cause: seed.CauseTable, text: "no protective MBR",
			craft: func(t *testing.T, img string) { patch(t, img, 446, mbrEntry(0x0C, 40000, 2048)) }},
		{name: "a hybrid MBR", spec: good, cause: seed.CauseTable, text: "hybrid MBR",
			craft: func(t *testing.T, img string) { patch(t, img, 446+16, mbrEntry(0x0C, 2048, 2048)) }},
		{name: "a damaged primary GPT", spec: good, cause: seed.CauseTable, text: "primary GPT is damaged",
			craft: func(t *testing.T, img string) { patch(t, img, 512, make([]byte, 512)) }},
		{name: "two recovery systems", spec: good, cause: seed.CauseAmbiguous, text: "2 recovery systems (20260101, 20991231)",
			craft: func(t *testing.T, img string) {
				m := filepath.Join(t.TempDir(), "model")
				os.WriteFile(m, signModel(t, brand, "acme", "acme-other", nil), 0o644)
				run(t, "mmd", "-i", img+"@@1M", "::systems/20991231")
				run(t, "mcopy", "-i", img+"@@1M", m, "::systems/20991231/model")
			}},
		{name: "two gadget snaps", spec: good, cause: seed.CauseAmbiguous, text: "2 gadget snaps acme-gadget",
			craft: func(t *testing.T, img string) {
				g := filepath.Join(t.TempDir(), "acme-gadget_2.snap")
				run(t, "mcopy", "-i", img+"@@1M", "::snaps/acme-gadget_1.snap", g)
				run(t, "mcopy", "-i", img+"@@1M", g, "::snaps/acme-gadget_2.snap")
			}},
		{name: "a UC20 model in a UC16 seed", spec: seedimage.Spec{Kind: seedimage.KindUC16, Table: "mbr", Model: line, Gadget: &seedimage.Gadget{Name: "acme-gadget"}},
			cause: seed.CauseNoSeed, text: "a UC20+ model in an Ubuntu Core 16/18 seed"},
		{name: "an ubuntu-seed that does not read, a writable seed behind it", spec: seedimage.Spec{Kind: seedimage.KindUC16, Model: line, Gadget: &seedimage.Gadget{Name: "acme-gadget"}},
			cause: seed.CauseNoSeed, text: "partition 1 (ubuntu-seed): no systems/ directory",
			craft: func(t *testing.T, img string) { run(t, "sgdisk", "-c", "1:ubuntu-seed", img) }},
		{name: "another revision of the model", spec: seedimage.Spec{Model: signModel(t, brand, "acme", "acme-gw-armhf", map[string]any{"revision": "2"}),
			Gadget: good.Gadget, Snaps: good.Snaps}, cause: seed.CauseModelMismatch, text: "revision: the image's model is revision 2, the line's 0"},
		{name: "terminal escapes in a partition name", spec: good, cause: seed.CauseGadgetVolumes, text: "\uFFFD[2J",
			craft: func(t *testing.T, img string) {
				run(t, "sgdisk", "-n", "2:0:+1M", "-c", "2:\x1b[2J\x1b[32mPASS", img)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "image.img")
			if err := seedimage.Build(context.Background(), img, tc.spec); err != nil {
				t.Fatal(err)
			}
			if tc.craft != nil {
				tc.craft(t, img)
			}
			got, err := seed.ReadIsolated(context.Background(), img)
			if err != nil {
				t.Fatal(err)
			}
			v := seed.Check(got, want)
			if tc.cause == "" {
				if !v.Pass {
					t.Fatalf("refused: %+v", v.Problems)
				}
				return
			}
			var texts []string
			found := false
			for _, p := range v.Problems {
				texts = append(texts, p.Cause+": "+p.Text)
				if p.Cause == tc.cause && strings.Contains(p.Text, tc.text) {
					found = true
				}
				if strings.ContainsRune(p.Text, 0x1b) {
					t.Errorf("a problem prints an escape: %q", p.Text)
				}
			}
			if v.Pass || !found {
				t.Errorf("verdict pass=%v, problems:\n%s\nwant %s with %q", v.Pass, strings.Join(texts, "\n"), tc.cause, tc.text)
			}
			for _, p := range got.Partitions {
				if strings.ContainsRune(p.Name+p.Label, 0x1b) {
					t.Errorf("partition %d keeps an escape: %q", p.Index, p.Name)
				}
			}
		})
	}
}
