package lines

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/seed"
	"github.com/flashstation/flashstation/serialvault"
)

// ErrImagesRefused is NewPipeline's error when the image identity gate
// refuses the image of every line: the station has nothing it may flash.
var ErrImagesRefused = errors.New("the image identity gate refuses every line's image")

// closedImageRefused is a held line's batch run: it never opened.
const closedImageRefused = "image-refused"

// CheckImage runs the image identity gate on a line's (prepared) raw
// image: its seed read without mounting, its signed model checked against
// the line's model and brand keys, its gadget against its partitions.
func (l *Line) CheckImage(ctx context.Context, raw string) (*seed.Image, *seed.Verdict, error) {
	model, err := l.LoadModel()
	if err != nil {
		return nil, nil, err
	}
	keys, err := l.LoadKeyRing()
	if err != nil {
		return nil, nil, err
	}
	return l.checkImage(ctx, raw, model, keys)
}

func (l *Line) checkImage(ctx context.Context, raw string, model *serialvault.Model, keys *serialvault.KeyRing) (*seed.Image, *seed.Verdict, error) {
	return l.checkImageRead(ctx, raw, model, keys, nil)
}

// checkImageRead is checkImage taking the image from reads when another
// line with the same prepared image read it (and keeping it there).
func (l *Line) checkImageRead(ctx context.Context, raw string, model *serialvault.Model, keys *serialvault.KeyRing, reads map[string]*seed.Image) (*seed.Image, *seed.Verdict, error) {
	if img, ok := reads[raw]; ok {
		return img, seed.Check(img, seed.Expect{Model: model, Keys: keys, AllowDangerous: l.Image.AllowDangerous}), nil
	}
	img, err := seed.ReadIsolated(ctx, raw)
	if err == nil && reads != nil {
		reads[raw] = img
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, err
		}
		// An image the reader cannot open at all is refused as
		// unreadable, saying why.
		img = &seed.Image{Path: raw, Failed: err.Error()}
	}
	return img, seed.Check(img, seed.Expect{Model: model, Keys: keys, AllowDangerous: l.Image.AllowDangerous}), nil
}

// gateImage checks the line's prepared image and keeps the verdict; a
// refused image holds the line (its slots touch no board).
func (p *Pipeline) gateImage(ctx context.Context, lr *lineRun, reads map[string]*seed.Image) error {
	_, v, err := lr.cfg.checkImageRead(ctx, lr.image.RawPath, lr.model, lr.keys, reads)
	if err != nil {
		return fmt.Errorf("line %s: %w", lr.cfg.ID, err)
	}
	lr.gate = v
	if v.Pass {
		p.log.Info().Str("line", lr.cfg.ID).Str("model", v.Identity.BrandID+"/"+v.Identity.Model).Str("seed_label", v.Identity.SeedLabel).
			Str("model_digest", v.Identity.ModelDigest).Str("signature", v.Signature).Strs("notes", v.Notes).Msg("image identity gate: the image passes")
		return nil
	}
	p.log.Error().Str("line", lr.cfg.ID).Str("reason", v.Reason).Str("cause", v.Cause).Str("image", lr.cfg.Image.File).
		Str("problems", problemsText(v)).Msg("image identity gate: the image is refused; the line is held, no board is touched")
	return nil
}

// sameImage reports whether an open batch is of the image the gate just
// passed: its model digest, seed label and signing key, and its bytes.
func sameImage(b ledger.Batch, lr *lineRun) bool {
	id := lr.gate.Identity
	if b.ModelDigest != id.ModelDigest || b.SeedLabel != id.SeedLabel || b.ModelSignKey != id.SignKey {
		return false
	}
	return b.ImageSHA256 == "" || lr.image == nil || b.ImageSHA256 == lr.image.SourceSHA256
}

// seedLabel is the recovery system label of the line's image ("" on
// Ubuntu Core 16/18, or before the gate ran).
func (lr *lineRun) seedLabel() string {
	if lr.gate == nil {
		return ""
	}
	return lr.gate.Identity.SeedLabel
}

func problemsText(v *seed.Verdict) string {
	var b strings.Builder
	for i, pr := range v.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(pr.Cause + ": " + pr.Text)
	}
	return b.String()
}

// RefusedError is the error of a station whose every line is held.
func refusedError(p *Pipeline) error {
	var parts []string
	for i := range p.st.Lines {
		lr := p.lines[p.st.Lines[i].ID]
		parts = append(parts, fmt.Sprintf("line %s (%s): %s: %s", lr.cfg.ID, lr.cfg.Image.File, lr.gate.Cause, problemsText(lr.gate)))
	}
	return fmt.Errorf("%w: %s", ErrImagesRefused, strings.Join(parts, "; "))
}

// ImageCause explains a refusal cause of the image identity gate to the
// operator: a few words for the bench and what to do.
type ImageCause struct {
	Code  string
	Words string // a few words, for a slot card
	Do    string // what to do, for the operator and the supervisor
}

// ImageCauses are the gate's causes, most serious first.
var ImageCauses = []ImageCause{
	{seed.CauseUnreadable, "not a disk image", "the line's image file is not an Ubuntu Core disk image: fix lines[].image.file"},
	{seed.CauseTable, "bad partition table", "the image's partition table is not one every board reads the same way (a hybrid or missing protective MBR, a damaged GPT, overlapping partitions): rebuild the image with ubuntu-image"},
	{seed.CauseNoSeed, "no seed in image", "the image carries no seed: build it with ubuntu-image from the line's model"},
	{seed.CauseModelBad, "model unreadable", "the image's model assertion is damaged: rebuild the image"},
	{seed.CauseAmbiguous, "ambiguous seed", "the image holds more than one recovery system, seed partition, gadget snap or model, and a board boots only one: rebuild it from the line's model alone"},
	{seed.CauseModelMismatch, "wrong model", "the image is built for another model: take the image made from this line's model"},
	{seed.CauseSignature, "model not signed", "the image's model is not signed by the line's brand key: take a signed image, or fix lines[].brand-keys"},
	{seed.CauseDangerous, "dangerous grade", "a development (dangerous grade) image: take the production image"},
	{seed.CauseGadgetMissing, "no gadget snap", "the image lacks the model's gadget snap: rebuild the image"},
	{seed.CauseGadgetHook, "no prepare-device", "the gadget has no prepare-device hook, so boards would never ask the vault for a serial: fix the gadget"},
	{seed.CauseGadgetVolumes, "gadget ≠ partitions", "the gadget's volumes disagree with the image's partitions: rebuild the image with that gadget"},
}

// ImageCauseFor returns the entry of a cause code.
func ImageCauseFor(code string) ImageCause {
	for _, c := range ImageCauses {
		if c.Code == code {
			return c
		}
	}
	return ImageCause{Code: code, Words: "image refused", Do: "see the station's log: the image identity gate refused the image"}
}
