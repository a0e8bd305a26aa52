package seed

import (
	"crypto/sha3"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/flashstation/flashstation/serialvault"
)

// ReasonRefused is the failure reason of a refused image (the flash
// package's image-refused).
const ReasonRefused = "image-refused"

// Causes of a refusal, most serious first: a Verdict's Cause is the first
// of its problems in this order.
const (
	CauseUnreadable    = "image-unreadable"       // no partition table, or the image does not read
	CauseTable         = "image-partition-table"  // a table boards would not all read the same way
	CauseNoSeed        = "image-no-seed"          // no ubuntu-seed (UC20+) or writable (UC16/18) seed with a model
	CauseModelBad      = "image-model-unreadable" // the seed's model does not decode
	CauseAmbiguous     = "image-seed-ambiguous"   // more than one recovery system, seed partition, gadget or model
	CauseModelMismatch = "image-model-mismatch"   // a signed model, not the line's
	CauseSignature     = "image-model-signature"  // the model is not signed by a key the line trusts
	CauseDangerous     = "image-dangerous-grade"  // a dangerous-grade (development) image on a production line
	CauseGadgetMissing = "image-gadget-missing"   // the model's gadget snap is not in the seed
	CauseGadgetHook    = "image-gadget-hook"      // the gadget has no prepare-device hook
	CauseGadgetVolumes = "image-gadget-volumes"   // gadget.yaml's volume disagrees with the partitions
)

const (
	hookPrepareDevice   = "prepare-device"
	maxVolumeDifference = 1 << 20 // alignment slack between a structure's size and its partition's
)

var causeOrder = []string{CauseUnreadable, CauseTable, CauseNoSeed, CauseModelBad, CauseAmbiguous, CauseModelMismatch, CauseSignature,
	CauseDangerous, CauseGadgetMissing, CauseGadgetHook, CauseGadgetVolumes}

// Expect is what a line requires of its image.
type Expect struct {
	// Model is the line's signed model assertion.
	Model *serialvault.Model
	// Keys are the line's trusted brand keys.
	Keys *serialvault.KeyRing
	// AllowDangerous lets a dangerous-grade image through (a development
	// line); a production line refuses it.
	AllowDangerous bool
}

// Problem is one reason the image is refused.
type Problem struct {
	Cause string `json:"cause"`
	// Field is the model header that differs (image-model-mismatch).
	Field string `json:"field,omitempty"`
	Image string `json:"image,omitempty"` // what the image has
	Line  string `json:"line,omitempty"`  // what the line wants
	// Text says it for QA, in a sentence.
	Text string `json:"text"`
}

// Verdict is the gate's answer for one image and one line.
type Verdict struct {
	Pass bool `json:"pass"`
	// Reason is ReasonRefused when the image is refused; Cause is the
	// first problem's cause.
	Reason   string    `json:"reason,omitempty"`
	Cause    string    `json:"cause,omitempty"`
	Problems []Problem `json:"problems,omitempty"`
	// Notes are differences that do not refuse the image (another
	// revision of the line's model, say).
	Notes []string `json:"notes,omitempty"`
	// Identity is what goes with each unit into the ledger (empty fields
	// when the image has no readable model).
	Identity Identity `json:"identity"`
	// Signature says how the model's signature checked.
	Signature string `json:"signature"`
}

// Identity is what the station records of an image with every unit.
type Identity struct {
	// ModelDigest is the SHA3-384 of the model assertion as stored on the
	// image, base64url without padding (as assertion key ids are).
	ModelDigest string `json:"model_digest"`
	// SeedLabel is the recovery system's label (UC20+; "" on UC16/18).
	SeedLabel string `json:"seed_label"`
	// SignKey is the model's signing key id (sign-key-sha3-384).
	SignKey string `json:"model_sign_key"`
	BrandID string `json:"brand_id"`
	Model   string `json:"model"`
	Grade   string `json:"grade,omitempty"`
}

// Digest is the SHA3-384 of b, base64url without padding.
func Digest(b []byte) string {
	sum := sha3.Sum384(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Summary is the verdict in one line for the operator: "image passes" or
// what refuses it.
func (v *Verdict) Summary() string {
	if v.Pass {
		return fmt.Sprintf("image passes: model %s/%s, signed by %s", v.Identity.BrandID, v.Identity.Model, shortKey(v.Identity.SignKey))
	}
	if len(v.Problems) == 0 {
		return "image refused"
	}
	p := v.Problems[0]
	s := p.Text
	if n := len(v.Problems) - 1; n > 0 {
		s += fmt.Sprintf(" (and %d more)", n)
	}
	return s
}

// Err is the verdict as an error (nil when the image passes): it wraps
// ErrRefused and lists every problem.
func (v *Verdict) Err() error {
	if v.Pass {
		return nil
	}
	var texts []string
	for _, p := range v.Problems {
		texts = append(texts, p.Text)
	}
	return fmt.Errorf("%w (%s): %s", ErrRefused, v.Cause, strings.Join(texts, "; "))
}

// ErrRefused is the error of a refused image.
var ErrRefused = errors.New("the image identity gate refuses the image")

// Check gives the gate's verdict on img for a line that expects want.
func Check(img *Image, want Expect) *Verdict {
	v := &Verdict{}
	add := func(p Problem) { v.Problems = append(v.Problems, p) }
	s := img.Seed
	switch {
	case img.Failed != "":
		add(Problem{Cause: CauseUnreadable, Text: "the image could not be read: " + img.Failed})
	case img.Table == "" && s == nil:
		add(Problem{Cause: CauseUnreadable, Text: "the image has no partition table (neither GPT nor MBR): it is not an Ubuntu Core disk image" + seedWhy(img)})
	case s == nil:
		add(Problem{Cause: CauseNoSeed, Text: "the image carries no seed" + seedWhy(img)})
	case s.Model == nil:
		why := s.ModelErr
		if why == "" {
			why = "no model assertion"
		}
		add(Problem{Cause: CauseModelBad, Text: fmt.Sprintf("the seed's model %s does not read: %s", s.ModelFile, why)})
	}
	if img.TableProblem != "" {
		add(Problem{Cause: CauseTable, Text: "the partition table is not one every board reads the same way: " + img.TableProblem})
	}
	for _, a := range img.Ambiguous {
		add(Problem{Cause: CauseAmbiguous, Text: "the image holds " + a + " where a board takes one: the gate cannot know which one boots"})
	}
	if s != nil {
		v.Identity.SeedLabel = s.Label
		if len(s.ModelBytes) > 0 {
			v.Identity.ModelDigest = Digest(s.ModelBytes)
		}
	}
	if s == nil || s.Model == nil {
		v.Signature = "not checked: no model"
		return v.finish()
	}
	m := s.Model
	v.Identity.SignKey, v.Identity.BrandID, v.Identity.Model, v.Identity.Grade = m.SignKeyID(), m.BrandID, m.Model, m.Grade
	sig, sigErr := verifyModel(m, s.Assertions, want.Keys)
	if want.Model != nil {
		for _, p := range compareModels(m, want.Model) {
			add(p)
		}
		// Another revision (or signing) of the same model may differ in
		// headers the comparison does not read (store, authorities,
		// validation sets): the line's model file must be the model the
		// image was built from. (A model whose signature fails has a
		// revision and a time not to be believed: the signature says
		// what is wrong.)
		switch {
		case sigErr != nil:
		case m.Revision() != want.Model.Revision():
			add(Problem{Cause: CauseModelMismatch, Field: "revision", Image: fmt.Sprint(m.Revision()), Line: fmt.Sprint(want.Model.Revision()),
				Text: fmt.Sprintf("revision: the image's model is revision %d, the line's %d: give the line the model the image was built from", m.Revision(), want.Model.Revision())})
		case !m.Timestamp.Equal(want.Model.Timestamp):
			add(Problem{Cause: CauseModelMismatch, Field: "timestamp", Image: m.Timestamp.Format(time.RFC3339), Line: want.Model.Timestamp.Format(time.RFC3339),
				Text: fmt.Sprintf("timestamp: the image's model was signed at %s, the line's at %s: give the line the model the image was built from", m.Timestamp.Format(time.RFC3339), want.Model.Timestamp.Format(time.RFC3339))})
		}
	}
	if uc20 := m.UC20(); uc20 != (s.Kind == KindUC20) {
		what := "an Ubuntu Core 16/18 model in a UC20+ seed (ubuntu-seed)"
		if uc20 {
			what = "a UC20+ model in an Ubuntu Core 16/18 seed (writable)"
		}
		add(Problem{Cause: CauseNoSeed, Field: "seed", Text: "the image carries " + what + ": its boards would not boot the seed checked"})
	}
	v.Signature = sig
	if sigErr != nil {
		add(Problem{Cause: CauseSignature, Text: sigErr.Error()})
	}
	if m.Grade == "dangerous" && !want.AllowDangerous {
		add(Problem{Cause: CauseDangerous, Field: "grade", Image: "dangerous", Line: gradeOf(want.Model),
			Text: "the image is dangerous grade (a development image): a production line refuses it (lines[].image.allow-dangerous: true allows it on a development line)"})
	}
	checkGadget(img, s, m, add)
	return v.finish()
}

func seedWhy(img *Image) string {
	if img.SeedErr != "" {
		return ": " + img.SeedErr
	}
	return ""
}

func gradeOf(m *serialvault.Model) string {
	if m == nil {
		return ""
	}
	return m.Grade
}

// finish orders the problems by cause and sets the verdict.
func (v *Verdict) finish() *Verdict {
	for i := range v.Problems {
		p := &v.Problems[i]
		p.Text, p.Image, p.Line = printable(p.Text), printable(p.Image), printable(p.Line)
	}
	slices.SortStableFunc(v.Problems, func(a, b Problem) int {
		return slices.Index(causeOrder, a.Cause) - slices.Index(causeOrder, b.Cause)
	})
	v.Pass = len(v.Problems) == 0
	if !v.Pass {
		v.Reason, v.Cause = ReasonRefused, v.Problems[0].Cause
	}
	return v
}

// printable is s with control and invalid characters replaced, for a
// terminal, a card or a log (whatever the image held).
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// compareModels lists how the image's model differs from the line's on
// the headers that make a device what it is.
func compareModels(img, line *serialvault.Model) []Problem {
	var out []Problem
	diff := func(field, got, want string) {
		if got != want {
			out = append(out, Problem{Cause: CauseModelMismatch, Field: field, Image: got, Line: want,
				Text: fmt.Sprintf("%s: the image has %s, the line wants %s", field, quoteOrNone(got), quoteOrNone(want))})
		}
	}
	diff("authority-id", img.AuthorityID(), line.AuthorityID())
	diff("brand-id", img.BrandID, line.BrandID)
	diff("model", img.Model, line.Model)
	diff("series", img.Series, line.Series)
	diff("architecture", img.Architecture, line.Architecture)
	diff("base", img.Base, line.Base)
	diff("grade", img.Grade, line.Grade)
	diff("gadget", img.Gadget, line.Gadget)
	diff("kernel", img.Kernel, line.Kernel)
	diff("required snaps", strings.Join(requiredSnaps(img), " "), strings.Join(requiredSnaps(line), " "))
	diff("sign-key-sha3-384", img.SignKeyID(), line.SignKeyID())
	return out
}

func quoteOrNone(s string) string {
	if s == "" {
		return "none"
	}
	return fmt.Sprintf("%q", s)
}

// requiredSnaps are the snaps a model requires, sorted: UC16/18's
// required-snaps, or UC20+'s snaps entries whose presence is required
// (the default), each with its type and snap id.
func requiredSnaps(m *serialvault.Model) []string {
	var out []string
	out = append(out, m.RequiredSnaps...)
	for _, s := range m.Snaps {
		if s.Presence == "optional" {
			continue
		}
		e := s.Name
		if s.Type != "" && s.Type != "app" {
			e += "(" + s.Type + ")"
		}
		if s.ID != "" {
			e += "=" + s.ID
		}
		out = append(out, e)
	}
	slices.Sort(out)
	return out
}

// verifyModel checks the model's signature: by a key the line trusts, or
// through the image's own account-key assertion for the signing key when
// that account-key is itself signed by a key the line trusts. The image's
// account-key, when it has one, must belong to the model's brand and be
// valid when the model was signed.
func verifyModel(m *serialvault.Model, carried []*serialvault.Assertion, keys *serialvault.KeyRing) (string, error) {
	id := m.SignKeyID()
	var ak *serialvault.AccountKey
	for _, a := range carried {
		if a.Type() != "account-key" || a.HeaderString("public-key-sha3-384") != id {
			continue
		}
		k, err := serialvault.AsAccountKey(a)
		if err != nil {
			return "refused", fmt.Errorf("the image's account-key for the model's signing key %s does not read: %w", shortKey(id), err)
		}
		ak = k
		break
	}
	if ak != nil {
		if ak.AccountID != m.BrandID {
			return "refused", fmt.Errorf("the image's account-key for signing key %s belongs to account %q, not to the model's brand %q", shortKey(id), ak.AccountID, m.BrandID)
		}
		if m.Timestamp.Before(ak.Since) || (!ak.Until.IsZero() && !m.Timestamp.Before(ak.Until)) {
			return "refused", fmt.Errorf("the model was signed at %s, outside its key's validity (account-key %q since %s%s)",
				m.Timestamp.Format(time.RFC3339), ak.Name, ak.Since.Format(time.RFC3339), untilWords(ak.Until))
		}
	}
	if keys == nil || keys.Len() == 0 {
		return "not checked: the line has no brand keys", errors.New("the line trusts no brand key, so the image's model cannot be checked")
	}
	if _, ok := keys.Lookup(id); ok {
		k, err := keys.Verify(m.Assertion)
		if err != nil {
			return "refused", fmt.Errorf("the model's signature does not hold with the line's brand key %s (%s): the model was changed after it was signed: %w", shortKey(id), k.Source, err)
		}
		return fmt.Sprintf("verified with the line's brand key %s (%s)", shortKey(id), k.Source), nil
	}
	if ak == nil {
		return "refused", fmt.Errorf("the model is signed by key %s, which the line does not trust (the image carries no account-key for it)", shortKey(id))
	}
	by, err := keys.Verify(ak.Assertion)
	if err != nil {
		return "refused", fmt.Errorf("the image's account-key for %s is not signed by a key the line trusts: %w", shortKey(id), err)
	}
	if err := serialvault.Verify(m.Assertion, ak.PublicKey); err != nil {
		return "refused", fmt.Errorf("the model's signature does not hold with its account-key %s: the model was changed after it was signed: %w", shortKey(id), err)
	}
	return fmt.Sprintf("verified with the image's account-key %s (%q of %s), signed by the line's key %s (%s)",
		shortKey(id), ak.Name, ak.AccountID, shortKey(by.Key.ID()), by.Source), nil
}

func untilWords(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return " until " + t.Format(time.RFC3339)
}

func shortKey(id string) string {
	if len(id) > 12 {
		return id[:12] + "..."
	}
	return id
}

// checkGadget checks that the seed holds the model's gadget, that the
// gadget has a prepare-device hook (without it the board never asks the
// vault for a serial) and that its gadget.yaml volume agrees with the
// image's partitions.
func checkGadget(img *Image, s *Seed, m *serialvault.Model, add func(Problem)) {
	g := s.Gadget
	if g == nil {
		why := s.GadgetErr
		if why == "" {
			why = "no snap of that name in the seed"
		}
		add(Problem{Cause: CauseGadgetMissing, Field: "gadget", Line: m.Gadget, Text: fmt.Sprintf("the model's gadget snap %q is not readable in the seed: %s", m.Gadget, why)})
		return
	}
	if !slices.Contains(g.Hooks, hookPrepareDevice) {
		hooks := "none"
		if len(g.Hooks) > 0 {
			hooks = strings.Join(g.Hooks, ", ")
		}
		add(Problem{Cause: CauseGadgetHook, Field: "meta/hooks", Image: hooks, Line: hookPrepareDevice,
			Text: fmt.Sprintf("the gadget %s has no meta/hooks/prepare-device (its hooks: %s): its boards would never ask the line's vault for a serial", g.File, hooks)})
	}
	if g.YAMLErr != "" {
		add(Problem{Cause: CauseGadgetVolumes, Text: fmt.Sprintf("the gadget %s's meta/gadget.yaml does not read: %s", g.File, g.YAMLErr)})
		return
	}
	for _, p := range volumeProblems(img, s, g) {
		add(Problem{Cause: CauseGadgetVolumes, Text: p})
	}
}

// Structure roles.
const (
	roleSeed     = "system-seed"
	roleSeedNull = "system-seed-null"
	roleBoot     = "system-boot"
	roleSave     = "system-save"
	roleData     = "system-data"
	roleMBR      = "mbr"
)

// volumeProblems compares the gadget's volume with the image's partitions.
// Every partition of the image is a structure of the volume, at its offset
// (when gadget.yaml gives one), of its type, size and file system; every
// structure the image must hold is a partition of it. On UC20+ the
// ubuntu-boot, ubuntu-save and ubuntu-data partitions are made by the
// install boot, so the image may lack them.
func volumeProblems(img *Image, s *Seed, g *Gadget) []string {
	if len(g.Volumes) == 0 {
		return []string{"the gadget's meta/gadget.yaml has no volume"}
	}
	name, vol := pickVolume(g.Volumes, s.Kind)
	var out []string
	schema := vol.Schema
	if schema == "" {
		schema = "gpt"
	}
	if schema != img.Table {
		out = append(out, fmt.Sprintf("volume %s has schema %s, the image's partition table is %s", name, schema, tableWords(img.Table)))
	}
	used := map[int]bool{}
	nth := 0 // partitions in the volume so far, for MBR matching by position
	for _, st := range vol.Structure {
		if st.Type == "bare" || st.Role == roleMBR || st.Name == "mbr" {
			continue
		}
		nth++
		p := findPartition(img, st, nth)
		required := true
		if s.Kind == KindUC20 {
			switch st.Role {
			case roleBoot, roleSave, roleData:
				required = false
			}
		}
		what := structureWords(st)
		if p == nil {
			if required {
				out = append(out, fmt.Sprintf("volume %s's %s is not a partition of the image", name, what))
			}
			continue
		}
		used[p.Index] = true
		if st.Offset >= 0 && p.Start != st.Offset {
			out = append(out, fmt.Sprintf("%s starts at byte %d in gadget.yaml, partition %d starts at %d", what, st.Offset, p.Index, p.Start))
		}
		if st.Size > 0 {
			grown := st.Role == roleData // the writable partition may be grown to the disk
			if p.Size < st.Size || (!grown && p.Size > st.Size+maxVolumeDifference) {
				out = append(out, fmt.Sprintf("%s is %d bytes in gadget.yaml, partition %d is %d", what, st.Size, p.Index, p.Size))
			}
		}
		if t := structureType(st.Type, img.Table); t != "" && !strings.EqualFold(t, p.Type) {
			out = append(out, fmt.Sprintf("%s has type %s in gadget.yaml, partition %d has %s", what, t, p.Index, p.Type))
		}
		if st.Filesystem != "" && p.FileSystem != "" && !sameFS(st.Filesystem, p.FileSystem) {
			out = append(out, fmt.Sprintf("%s is %s in gadget.yaml, partition %d is %s", what, st.Filesystem, p.Index, p.FileSystem))
		}
	}
	if s.Kind == KindUC16 && !hasRole(vol, roleData) {
		// Ubuntu Core 16/18 gadgets may leave out the writable
		// partition: ubuntu-image adds it after their structures.
		if p := partitionNamed(img, uc16DataName); p != nil {
			used[p.Index] = true
		}
	}
	for _, p := range img.Partitions {
		if !used[p.Index] {
			out = append(out, fmt.Sprintf("partition %d (%s) is not a structure of the gadget's volume %s", p.Index, partitionWords(p), name))
		}
	}
	return out
}

func hasRole(vol Volume, role string) bool {
	for _, st := range vol.Structure {
		if st.Role == role {
			return true
		}
	}
	return false
}

// pickVolume is the volume the image was built from: the only one, or the
// one holding the seed's role.
func pickVolume(vols map[string]Volume, kind string) (string, Volume) {
	names := make([]string, 0, len(vols))
	for n := range vols {
		names = append(names, n)
	}
	slices.Sort(names)
	want := roleSeed
	if kind == KindUC16 {
		want = roleData
	}
	for _, n := range names {
		for _, st := range vols[n].Structure {
			if st.Role == want || (want == roleSeed && st.Role == roleSeedNull) {
				return n, vols[n]
			}
		}
	}
	return names[0], vols[names[0]]
}

// findPartition is the partition a structure became: by GPT name, by file
// system label, or (MBR, no names) by position.
func findPartition(img *Image, st Structure, nth int) *Partition {
	names := []string{st.Name}
	if st.Label != "" {
		names = append(names, st.Label)
	}
	switch st.Role {
	case roleSeed, roleSeedNull:
		names = append(names, "ubuntu-seed")
	case roleBoot:
		names = append(names, "ubuntu-boot", "system-boot")
	case roleSave:
		names = append(names, "ubuntu-save")
	case roleData:
		names = append(names, "ubuntu-data", "writable")
	}
	for i := range img.Partitions {
		p := &img.Partitions[i]
		for _, n := range names {
			if n != "" && (p.Name == n || (img.Table == "mbr" && p.Label == n)) {
				return p
			}
		}
	}
	if img.Table == "mbr" && nth <= len(img.Partitions) {
		p := &img.Partitions[nth-1]
		if p.Name == "" {
			return p
		}
	}
	return nil
}

// structureType is the part of a gadget.yaml type that applies to the
// image's table: "0C,EBD0A0A2-..." is MBR 0C or GPT EBD0A0A2-...
func structureType(t, table string) string {
	mbr, gpt, hybrid := strings.Cut(t, ",")
	if !hybrid {
		if len(t) == 2 {
			mbr, gpt = t, ""
		} else {
			mbr, gpt = "", t
		}
	}
	if table == "mbr" {
		return strings.ToUpper(mbr)
	}
	return strings.ToUpper(gpt)
}

func sameFS(gadget, found string) bool {
	norm := func(s string) string {
		switch s {
		case "vfat-12", "vfat-16", "vfat-32", "fat", "fat12", "fat16", "fat32":
			return "vfat"
		}
		return s
	}
	return norm(gadget) == norm(found)
}

func structureWords(st Structure) string {
	switch {
	case st.Name != "" && st.Role != "":
		return fmt.Sprintf("structure %s (%s)", st.Name, st.Role)
	case st.Name != "":
		return "structure " + st.Name
	case st.Role != "":
		return "the " + st.Role + " structure"
	}
	return "a structure"
}

func partitionWords(p Partition) string {
	n := p.Name
	if n == "" {
		n = p.Label
	}
	if n == "" {
		n = "unnamed"
	}
	return fmt.Sprintf("%s, %d bytes at %d", n, p.Size, p.Start)
}

func tableWords(t string) string {
	if t == "" {
		return "missing"
	}
	return t
}
