package seed_test

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashstation/flashstation/seed"
	"github.com/flashstation/flashstation/serialvault"
)

const assertionsDir = "../../shared/testdata/assertions/"

func readShared(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(assertionsDir + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeModel(t *testing.T, b []byte) *serialvault.Model {
	t.Helper()
	a, err := serialvault.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	m, err := serialvault.AsModel(a)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	keysOnce            sync.Once
	rootKey, devBrand   *serialvault.PrivateKey
	otherBrand, keysErr = (*serialvault.PrivateKey)(nil), error(nil)
)

// testKeys are generated once: a root (an authority that signs brand
// account-keys), a brand key and another brand's key.
func testKeys(t *testing.T) (root, brand, other *serialvault.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		for _, k := range []**serialvault.PrivateKey{&rootKey, &devBrand, &otherBrand} {
			if *k, keysErr = serialvault.GenerateKey(2048); keysErr != nil {
				return
			}
		}
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return rootKey, devBrand, otherBrand
}

// signModel signs a UC20+ model for brand with key, changing headers by
// over (a nil value deletes the header).
func signModel(t *testing.T, key *serialvault.PrivateKey, brand, model string, over map[string]any) []byte {
	t.Helper()
	h := map[string]any{
		"type": "model", "authority-id": brand, "series": "16", "brand-id": brand, "model": model,
		"architecture": "armhf", "base": "core22", "grade": "signed", "timestamp": "2026-01-01T00:00:00Z",
		"snaps": []any{
			map[string]any{"name": "acme-gadget", "id": "AcmeGadgetSnapId0000000000000001", "type": "gadget", "default-channel": "22/stable"},
			map[string]any{"name": "pi-kernel", "id": "jeIuP6tfFrvAdic8DMWqHmoaoukAPNbJ", "type": "kernel", "default-channel": "22/stable"},
			map[string]any{"name": "core22", "id": "amcUKQILKXHHTlmSa7NMdnXSx02dNeeT", "type": "base", "default-channel": "latest/stable"},
		},
	}
	for k, v := range over {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	a, err := serialvault.Sign(h, nil, key, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return a.Encode()
}

// accountKey is an account-key assertion for pub's account, signed by the
// root.
func accountKey(t *testing.T, root *serialvault.PrivateKey, account string, pub *serialvault.PublicKey, since string) *serialvault.Assertion {
	t.Helper()
	a, err := serialvault.Sign(map[string]any{
		"type": "account-key", "authority-id": "canonical", "account-id": account, "name": "models",
		"public-key-sha3-384": pub.ID(), "since": since,
	}, []byte(pub.Encode()), root, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ring(t *testing.T, keys ...*serialvault.PublicKey) *serialvault.KeyRing {
	t.Helper()
	r := serialvault.NewKeyRing()
	for _, k := range keys {
		if err := r.AddData("test key", []byte(k.Encode())); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func acmeRing(t *testing.T) *serialvault.KeyRing {
	t.Helper()
	r := serialvault.NewKeyRing()
	if err := r.AddFile(assertionsDir + "acme-brand-key.pub"); err != nil {
		t.Fatal(err)
	}
	return r
}

// uc20Image is an image as Read finds a good UC20+ image of model.
func uc20Image(t *testing.T, model []byte) *seed.Image {
	t.Helper()
	img := &seed.Image{Path: "test.img", Size: 64 << 20, Table: "gpt", Partitions: []seed.Partition{
		{Index: 1, Name: "ubuntu-seed", Type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", Start: 1 << 20, Size: 8 << 20, FileSystem: "vfat"},
	}}
	s := &seed.Seed{Kind: seed.KindUC20, Partition: 1, Label: "20260101", Systems: []string{"20260101"},
		ModelFile: "systems/20260101/model", ModelBytes: model, Snaps: []string{"acme-gadget_1.snap", "pi-kernel_1.snap", "core22_1.snap"}}
	if a, err := serialvault.Decode(model); err != nil {
		s.ModelErr = err.Error()
	} else if m, err := serialvault.AsModel(a); err != nil {
		s.ModelErr = err.Error()
	} else {
		s.Model = m
	}
	s.Gadget = &seed.Gadget{File: "acme-gadget_1.snap", Name: "acme-gadget", Hooks: []string{"configure", "prepare-device"},
		Volumes: map[string]seed.Volume{"pi": {Schema: "mbr", Bootloader: "u-boot", Structure: []seed.Structure{
			{Name: "ubuntu-seed", Role: "system-seed", Type: "0C,C12A7328-F81F-11D2-BA4B-00A0C93EC93B", Filesystem: "vfat", Offset: 1 << 20, Size: 8 << 20},
			{Name: "ubuntu-boot", Role: "system-boot", Type: "0C,C12A7328-F81F-11D2-BA4B-00A0C93EC93B", Filesystem: "vfat", Offset: -1, Size: 750 << 20},
			{Name: "ubuntu-save", Role: "system-save", Type: "83,0FC63DAF-8483-4772-8E79-3D69D8477DE4", Filesystem: "ext4", Offset: -1, Size: 16 << 20},
			{Name: "ubuntu-data", Role: "system-data", Type: "83,0FC63DAF-8483-4772-8E79-3D69D8477DE4", Filesystem: "ext4", Offset: -1, Size: 1500 << 20},
		}}}}
	// The gadget's schema follows the table the test gives.
	vol := s.Gadget.Volumes["pi"]
	vol.Schema = "gpt"
	s.Gadget.Volumes["pi"] = vol
	img.Seed = s
	return img
}

func causes(v *seed.Verdict) []string {
	var out []string
	for _, p := range v.Problems {
		if !slices.Contains(out, p.Cause) {
			out = append(out, p.Cause)
		}
	}
	return out
}

func TestCheck(t *testing.T) {
	_, brand, other := testKeys(t)
	acme := readShared(t, "10-model-acme-uc22.txt")
	acmeModel := decodeModel(t, acme)
	devModel := signModel(t, brand, "devco", "devco-gw", nil)
	dangerous := signModel(t, brand, "devco", "devco-gw", map[string]any{"grade": "dangerous"})
	tampered := bytes.Replace(acme, []byte("timestamp: 2026-01-01T00:00:00Z"), []byte("timestamp: 2026-01-02T00:00:00Z"), 1)
	if bytes.Equal(tampered, acme) {
		t.Fatal("the tampering changed nothing")
	}
	regraded := bytes.Replace(acme, []byte("grade: signed"), []byte("grade: dangerous"), 1)

	type tc struct {
		name   string
		img    func() *seed.Image
		want   seed.Expect
		causes []string // nil: passes
		fields []string // the model headers that differ
		text   string   // in the first problem
	}
	acmeLine := seed.Expect{Model: acmeModel, Keys: acmeRing(t)}
	devLine := seed.Expect{Model: decodeModel(t, devModel), Keys: ring(t, brand.Public())}
	cases := []tc{
		{name: "the line's own image", img: func() *seed.Image { return uc20Image(t, acme) }, want: acmeLine},
		{name: "another model of the same brand", want: devLine,
			img:    func() *seed.Image { return uc20Image(t, signModel(t, brand, "devco", "devco-sensor", nil)) },
			causes: []string{seed.CauseModelMismatch}, fields: []string{"model"}, text: `model: the image has "devco-sensor", the line wants "devco-gw"`},
		{name: "another brand", want: acmeLine,
			img:    func() *seed.Image { return uc20Image(t, readShared(t, "08-model-uc22-pi-armhf.real.txt")) },
			causes: []string{seed.CauseModelMismatch, seed.CauseSignature}, text: `authority-id: the image has "canonical", the line wants "acme"`},
		{name: "a tampered header", img: func() *seed.Image { return uc20Image(t, tampered) }, want: acmeLine,
			causes: []string{seed.CauseSignature}, text: "changed after it was signed"},
		{name: "a tampered grade", img: func() *seed.Image { return uc20Image(t, regraded) }, want: acmeLine,
			causes: []string{seed.CauseModelMismatch, seed.CauseSignature, seed.CauseDangerous}, fields: []string{"grade"}},
		{name: "dangerous grade on a production line", img: func() *seed.Image { return uc20Image(t, dangerous) },
			want: seed.Expect{Model: decodeModel(t, dangerous), Keys: ring(t, brand.Public())}, causes: []string{seed.CauseDangerous}, text: "dangerous grade"},
		{name: "dangerous grade on a development line", img: func() *seed.Image { return uc20Image(t, dangerous) },
			want: seed.Expect{Model: decodeModel(t, dangerous), Keys: ring(t, brand.Public()), AllowDangerous: true}},
		{name: "signed by another brand's key", want: devLine,
			img:    func() *seed.Image { return uc20Image(t, signModel(t, other, "devco", "devco-gw", nil)) },
			causes: []string{seed.CauseModelMismatch, seed.CauseSignature}, fields: []string{"sign-key-sha3-384"}},
		{name: "no prepare-device hook", want: acmeLine, img: func() *seed.Image {
			img := uc20Image(t, acme)
			img.Seed.Gadget.Hooks = []string{"configure"}
			return img
		}, causes: []string{seed.CauseGadgetHook}, text: "no meta/hooks/prepare-device"},
		{name: "no gadget snap", want: acmeLine, img: func() *seed.Image {
			img := uc20Image(t, acme)
			img.Seed.Gadget, img.Seed.GadgetErr = nil, "no acme-gadget_*.snap in snaps/"
			return img
		}, causes: []string{seed.CauseGadgetMissing}, text: "no acme-gadget_*.snap"},
		{name: "no seed", want: acmeLine, img: func() *seed.Image {
			img := uc20Image(t, acme)
			img.Seed, img.SeedErr = nil, "no partition named ubuntu-seed or writable"
			return img
		}, causes: []string{seed.CauseNoSeed}, text: "no partition named ubuntu-seed"},
		{name: "no partition table", want: acmeLine, img: func() *seed.Image {
			return &seed.Image{Path: "zeros.img", Size: 1 << 20, SeedErr: "no GPT or MBR"}
		}, causes: []string{seed.CauseUnreadable}},
		{name: "a model that does not decode", want: acmeLine, img: func() *seed.Image {
			return uc20Image(t, []byte("type: model\n\nnot an assertion"))
		}, causes: []string{seed.CauseModelBad}},
		{name: "the seed partition moved", want: acmeLine, img: func() *seed.Image {
			img := uc20Image(t, acme)
			img.Partitions[0].Start = 2 << 20
			return img
		}, causes: []string{seed.CauseGadgetVolumes}, text: "starts at byte 1048576 in gadget.yaml, partition 1 starts at 2097152"},
		{name: "a partition the gadget does not have", want: acmeLine, img: func() *seed.Image {
			img := uc20Image(t, acme)
			img.Partitions = append(img.Partitions, seed.Partition{Index: 2, Name: "extra", Type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", Start: 9 << 20, Size: 1 << 20})
			return img
		}, causes: []string{seed.CauseGadgetVolumes}, text: "partition 2 (extra"},
		{name: "a gadget for MBR on a GPT image", want: acmeLine, img: func() *seed.Image {
			img := uc20Image(t, acme)
			vol := img.Seed.Gadget.Volumes["pi"]
			vol.Schema = "mbr"
			img.Seed.Gadget.Volumes["pi"] = vol
			return img
		}, causes: []string{seed.CauseGadgetVolumes}, text: "schema mbr"},
		{name: "a seed partition of another type", want: acmeLine, img: func() *seed.Image {
			img := uc20Image(t, acme)
			img.Partitions[0].Type = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
			return img
		}, causes: []string{seed.CauseGadgetVolumes}, text: "has type C12A7328"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := seed.Check(c.img(), c.want)
			if got := causes(v); !slices.Equal(got, c.causes) {
				t.Fatalf("causes %q, want %q (problems %+v)", got, c.causes, v.Problems)
			}
			if v.Pass != (c.causes == nil) || (v.Err() == nil) != v.Pass {
				t.Fatalf("pass %v, err %v", v.Pass, v.Err())
			}
			if !v.Pass {
				if v.Reason != seed.ReasonRefused || v.Cause != c.causes[0] {
					t.Errorf("reason %q cause %q", v.Reason, v.Cause)
				}
				if c.text != "" && !strings.Contains(v.Problems[0].Text, c.text) {
					t.Errorf("first problem %q, want it to say %q", v.Problems[0].Text, c.text)
				}
				if !strings.Contains(v.Summary(), v.Problems[0].Text) {
					t.Errorf("summary %q lacks the first problem", v.Summary())
				}
			}
			for _, f := range c.fields {
				if !slices.ContainsFunc(v.Problems, func(p seed.Problem) bool { return p.Field == f }) {
					t.Errorf("no difference on %s in %+v", f, v.Problems)
				}
			}
		})
	}
}

func TestCheckIdentity(t *testing.T) {
	acme := readShared(t, "10-model-acme-uc22.txt")
	v := seed.Check(uc20Image(t, acme), seed.Expect{Model: decodeModel(t, acme), Keys: acmeRing(t)})
	if !v.Pass {
		t.Fatal(v.Err())
	}
	id := v.Identity
	if id.ModelDigest != seed.Digest(acme) || len(id.ModelDigest) != 64 {
		t.Errorf("digest %q", id.ModelDigest)
	}
	if id.SeedLabel != "20260101" || id.SignKey != "UytTqTvREVhx0tSfYC6KkFHmLWllIIZbQ3NsEG7OARrWuaXSRJyey0vjIQkTEvMO" ||
		id.BrandID != "acme" || id.Model != "acme-gw-armhf" || id.Grade != "signed" {
		t.Errorf("identity %+v", id)
	}
	if !strings.Contains(v.Signature, "verified with the line's brand key UytTqTvREVhx") {
		t.Errorf("signature %q", v.Signature)
	}
	if seed.Digest(acme) == seed.Digest(append(acme, '\n')) {
		t.Error("the digest ignores a byte")
	}
}

// The image's own account-key lets a line that trusts only the root
// verify the brand's model; an account-key for another account, or one not
// yet valid when the model was signed, refuses it.
func TestCheckThroughAccountKey(t *testing.T) {
	root, brand, other := testKeys(t)
	model := signModel(t, brand, "devco", "devco-gw", nil)
	line := seed.Expect{Model: decodeModel(t, model), Keys: ring(t, root.Public())}
	cases := []struct {
		name    string
		carried []*serialvault.Assertion
		want    string // "" passes; else in the signature problem
	}{
		{"the brand's account-key signed by the root", []*serialvault.Assertion{accountKey(t, root, "devco", brand.Public(), "2025-01-01T00:00:00Z")}, ""},
		{"no account-key", nil, "which the line does not trust"},
		{"an account-key of another account", []*serialvault.Assertion{accountKey(t, root, "mallory", brand.Public(), "2025-01-01T00:00:00Z")}, `belongs to account "mallory"`},
		{"an account-key signed by an untrusted key", []*serialvault.Assertion{accountKey(t, other, "devco", brand.Public(), "2025-01-01T00:00:00Z")}, "not signed by a key the line trusts"},
		{"an account-key not yet valid", []*serialvault.Assertion{accountKey(t, root, "devco", brand.Public(), "2026-06-01T00:00:00Z")}, "outside its key's validity"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := uc20Image(t, model)
			img.Seed.Assertions = c.carried
			v := seed.Check(img, line)
			if c.want == "" {
				if !v.Pass || !strings.Contains(v.Signature, "the image's account-key") {
					t.Fatalf("pass %v signature %q: %v", v.Pass, v.Signature, v.Err())
				}
				return
			}
			if v.Pass || v.Cause != seed.CauseSignature || !strings.Contains(v.Problems[0].Text, c.want) {
				t.Fatalf("cause %q problems %+v, want a signature problem saying %q", v.Cause, v.Problems, c.want)
			}
		})
	}
}

// UC16/18 images hold every partition of the gadget's volume; UC20+
// images lack those the install boot makes.
func TestCheckVolumesUC16(t *testing.T) {
	_, brand, _ := testKeys(t)
	m := signModel(t, brand, "devco", "devco-18", map[string]any{"snaps": nil, "grade": nil, "base": "core18",
		"gadget": "devco-gadget", "kernel": "pi-kernel", "required-snaps": []any{"devco-agent"}})
	img := &seed.Image{Path: "uc18.img", Table: "gpt", Partitions: []seed.Partition{
		{Index: 1, Name: "system-boot", Type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", Start: 1 << 20, Size: 4 << 20, FileSystem: "vfat"},
		{Index: 2, Name: "writable", Type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", Start: 5 << 20, Size: 20 << 20, FileSystem: "ext4"},
	}}
	mm := decodeModel(t, m)
	gadget := func(structs ...seed.Structure) *seed.Gadget {
		return &seed.Gadget{File: "devco-gadget_1.snap", Name: "devco-gadget", Hooks: []string{"prepare-device"},
			Volumes: map[string]seed.Volume{"pi": {Structure: structs}}}
	}
	boot := seed.Structure{Name: "system-boot", Role: "system-boot", Type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", Filesystem: "vfat", Offset: 1 << 20, Size: 4 << 20}
	data := seed.Structure{Name: "writable", Role: "system-data", Type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", Filesystem: "ext4", Offset: -1, Size: 10 << 20}
	want := seed.Expect{Model: mm, Keys: ring(t, brand.Public())}
	for _, c := range []struct {
		name string
		g    *seed.Gadget
		want string
	}{
		{"agrees (writable grown)", gadget(boot, data), ""},
		{"a structure the image lacks", gadget(boot, data, seed.Structure{Name: "extra", Type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", Offset: -1, Size: 1 << 20}), "structure extra is not a partition"},
		{"boot larger in the gadget", gadget(func() seed.Structure { b := boot; b.Size = 8 << 20; return b }(), data), "is 8388608 bytes in gadget.yaml"},
		{"boot of another file system", gadget(func() seed.Structure { b := boot; b.Filesystem = "ext4"; return b }(), data), "is ext4 in gadget.yaml, partition 1 is vfat"},
	} {
		t.Run(c.name, func(t *testing.T) {
			i := *img
			i.Seed = &seed.Seed{Kind: seed.KindUC16, Partition: 2, ModelFile: "system-data/var/lib/snapd/seed/assertions/model", ModelBytes: m, Model: mm, Gadget: c.g}
			v := seed.Check(&i, want)
			if c.want == "" {
				if !v.Pass {
					t.Fatal(v.Err())
				}
				return
			}
			if v.Pass || v.Cause != seed.CauseGadgetVolumes || !strings.Contains(v.Problems[0].Text, c.want) {
				t.Fatalf("problems %+v, want %q", v.Problems, c.want)
			}
		})
	}
}
