package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/lines"
	"github.com/flashstation/flashstation/seed"
)

func newImageCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Look into disk images",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var o imageInspectOptions
	inspect := &cobra.Command{
		Use:   "inspect [IMAGE] [--config FILE --line ID] [--json]",
		Short: "Partitions, seed, model and the image identity gate's verdict",
		Long: `Read an Ubuntu Core image's seed without mounting it (raw, .zst, .gz or .xz):
its partition table, the seed's recovery system label, the signed model, the
gadget's hooks and volumes. With --config and --line, the image identity gate
checks it against the line as the station does before any board: the model
against the line's model and brand keys, the grade, the gadget's
prepare-device hook and volumes. Without IMAGE, the line's own image.
Exit 0 when the image passes (or, without a line, when its seed reads), 1 when
it is refused.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.image = args[0]
			}
			return imageInspect(cmd.Context(), o, stdout, stderr)
		},
	}
	inspect.Flags().StringVar(&o.config, "config", "", "station file (with --line: check the image against the line)")
	inspect.Flags().StringVar(&o.line, "line", "", "the line whose model and brand keys the image must match")
	inspect.Flags().BoolVar(&o.json, "json", false, "print one JSON document")
	cmd.AddCommand(inspect)
	return cmd
}

type imageInspectOptions struct {
	image, config, line string
	json                bool
}

// imageReport is image inspect's --json document.
type imageReport struct {
	File    string        `json:"file"`
	Raw     string        `json:"raw"` // the raw image read (the file, or its prepared copy)
	Line    string        `json:"line,omitempty"`
	Image   *seed.Image   `json:"image"`
	Model   *modelSummary `json:"model,omitempty"`
	Verdict *seed.Verdict `json:"verdict"`
	// Checked says whether the verdict is against a line.
	Checked bool `json:"checked_against_line"`
}

type modelSummary struct {
	BrandID       string   `json:"brand_id"`
	Model         string   `json:"model"`
	Architecture  string   `json:"architecture,omitempty"`
	Base          string   `json:"base,omitempty"`
	Grade         string   `json:"grade,omitempty"`
	Gadget        string   `json:"gadget"`
	Kernel        string   `json:"kernel"`
	RequiredSnaps []string `json:"required_snaps,omitempty"`
	Revision      int      `json:"revision"`
	Timestamp     string   `json:"timestamp"`
	SignKey       string   `json:"sign_key"`
}

func imageInspect(ctx context.Context, o imageInspectOptions, stdout, stderr io.Writer) error {
	var line *lines.Line
	var st *lines.Station
	if o.config != "" || o.line != "" {
		var err error
		if o.config == "" {
			o.config = os.Getenv("FLASHSTATION_CONFIG")
		}
		if st, err = loadStation(o.config, stderr); err != nil {
			return err
		}
		if line, err = stationLine(st, o.line); err != nil {
			return err
		}
	}
	spec := flash.ImageSpec{Path: o.image}
	if o.image == "" {
		if line == nil {
			return usageErrorf("give IMAGE, or --config FILE --line ID for the line's image")
		}
		spec = lines.ImageSpecOf(line)
	}
	raw, cleanup, err := rawImage(ctx, spec, st)
	if err != nil {
		return err
	}
	defer cleanup()
	rep := imageReport{File: spec.Path, Raw: raw}
	if line != nil {
		rep.Line, rep.Checked = line.ID, true
		rep.Image, rep.Verdict, err = line.CheckImage(ctx, raw)
		if err != nil {
			return configError(err, fmt.Sprintf("Fix the line's model or brand keys in %s.", st.Path))
		}
	} else {
		if rep.Image, err = seed.ReadIsolated(ctx, raw); err != nil {
			rep.Image = &seed.Image{Path: raw, Failed: err.Error()}
		}
		rep.Verdict = seed.Check(rep.Image, seed.Expect{AllowDangerous: true})
		// Without a line there is nothing to trust the signature with:
		// the verdict is on what reads.
		rep.Verdict = withoutLine(rep.Verdict)
	}
	if s := rep.Image.Seed; s != nil && s.Model != nil {
		m := s.Model
		rep.Model = &modelSummary{BrandID: m.BrandID, Model: m.Model, Architecture: m.Architecture, Base: m.Base, Grade: m.Grade,
			Gadget: m.Gadget, Kernel: m.Kernel, Revision: m.Revision(), Timestamp: m.Timestamp.Format("2006-01-02T15:04:05Z07:00"),
			SignKey: m.SignKeyID(), RequiredSnaps: modelSnapNames(m.RequiredSnaps, s)}
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printImageReport(stdout, rep)
	}
	if !rep.Verdict.Pass {
		return reported(exitVerdict, fmt.Errorf("%s: %s", spec.Path, rep.Verdict.Err()))
	}
	return nil
}

func modelSnapNames(required []string, s *seed.Seed) []string {
	out := append([]string(nil), required...)
	for _, sn := range s.Model.Snaps {
		if sn.Presence != "optional" {
			out = append(out, sn.Name)
		}
	}
	return out
}

// withoutLine keeps the problems a verdict has without a line to check the
// signature against.
func withoutLine(v *seed.Verdict) *seed.Verdict {
	out := *v
	out.Problems = nil
	for _, p := range v.Problems {
		if p.Cause != seed.CauseSignature {
			out.Problems = append(out.Problems, p)
		}
	}
	out.Signature = "not checked: no line given (--config FILE --line ID)"
	out.Pass = len(out.Problems) == 0
	out.Reason, out.Cause = "", ""
	if !out.Pass {
		out.Reason, out.Cause = seed.ReasonRefused, out.Problems[0].Cause
	}
	return &out
}

// rawImage is the raw image to read: the file itself, or a compressed
// file's prepared copy (in the station's image cache when a station file
// is given, so its next start reuses it; else in a temporary directory).
func rawImage(ctx context.Context, spec flash.ImageSpec, st *lines.Station) (string, func(), error) {
	// Only a file or a disk: opening a FIFO would wait for a writer.
	if fi, err := os.Stat(spec.Path); err == nil && !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		return "", nil, usageHint(fmt.Errorf("image: %s is not a file (%s)", spec.Path, fi.Mode().Type()), "Give the image file (raw, .zst, .gz or .xz).")
	}
	f, err := os.Open(spec.Path)
	if err != nil {
		return "", nil, usageHint(fmt.Errorf("image: %w", err), "Give the image file (raw, .zst, .gz or .xz).")
	}
	head := make([]byte, 8)
	n, _ := io.ReadFull(f, head)
	f.Close()
	if flash.DetectFormat(head[:n]) == flash.FormatRaw && spec.SHA256 == "" {
		return spec.Path, func() {}, nil
	}
	dir, cleanup := "", func() {}
	if st != nil {
		dir = filepath.Join(st.DataDir, "images")
	} else {
		tmp, err := os.MkdirTemp("", "flashstation-inspect-")
		if err != nil {
			return "", nil, err
		}
		dir, cleanup = tmp, func() { os.RemoveAll(tmp) }
	}
	c, err := flash.NewCache(dir)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	p, err := c.Prepare(ctx, spec, nil)
	if err != nil {
		cleanup()
		if errors.Is(err, flash.ErrImageRefused) {
			return "", nil, &exitError{code: exitVerdict, reason: flash.ReasonImage, err: err, hint: "The image fails its checks (hash, bmap) before its seed is read."}
		}
		return "", nil, err
	}
	return p.RawPath, cleanup, nil
}

func printImageReport(w io.Writer, r imageReport) {
	img := r.Image
	fmt.Fprintf(w, "image    %s", r.File)
	if r.Raw != r.File {
		fmt.Fprintf(w, " (read from its raw copy %s)", r.Raw)
	}
	fmt.Fprintf(w, ", %s\n", human(img.Size))
	table := img.Table
	if table == "" {
		table = "none"
	}
	fmt.Fprintf(w, "table    %s, %d partitions\n", table, len(img.Partitions))
	for _, p := range img.Partitions {
		name := p.Name
		if name == "" {
			name = p.Label
		}
		fmt.Fprintf(w, "  %2d  %-14s %-8s at %-10s %10s  type %s\n", p.Index, orDash(name), orDash(p.FileSystem), human(p.Start), human(p.Size), p.Type)
	}
	s := img.Seed
	if s == nil {
		fmt.Fprintf(w, "seed     none: %s\n", img.SeedErr)
	} else {
		fmt.Fprintf(w, "seed     %s on partition %d", s.Kind, s.Partition)
		if s.Label != "" {
			fmt.Fprintf(w, ", recovery system %s", s.Label)
			if len(s.Systems) > 1 {
				fmt.Fprintf(w, " (of %s)", strings.Join(s.Systems, ", "))
			}
		}
		fmt.Fprintf(w, ", %d snaps\n", len(s.Snaps))
		if m := r.Model; m != nil {
			fmt.Fprintf(w, "model    %s/%s (%s), revision %d, signed %s\n", m.BrandID, m.Model, s.ModelFile, m.Revision, m.Timestamp)
			fmt.Fprintf(w, "         architecture %s, base %s, grade %s, gadget %s, kernel %s\n", orDash(m.Architecture), orDash(m.Base), orDash(m.Grade), m.Gadget, m.Kernel)
			if len(m.RequiredSnaps) > 0 {
				fmt.Fprintf(w, "         snaps %s\n", strings.Join(m.RequiredSnaps, ", "))
			}
			fmt.Fprintf(w, "         digest %s\n", r.Verdict.Identity.ModelDigest)
			fmt.Fprintf(w, "         key %s\n", m.SignKey)
		} else {
			fmt.Fprintf(w, "model    %s does not read: %s\n", s.ModelFile, s.ModelErr)
		}
		if g := s.Gadget; g != nil {
			hooks := "none"
			if len(g.Hooks) > 0 {
				hooks = strings.Join(g.Hooks, ", ")
			}
			fmt.Fprintf(w, "gadget   %s (%s): hooks %s; %d volumes\n", g.Name, g.File, hooks, len(g.Volumes))
		} else {
			fmt.Fprintf(w, "gadget   none: %s\n", s.GadgetErr)
		}
	}
	fmt.Fprintf(w, "signature %s\n", r.Verdict.Signature)
	for _, n := range r.Verdict.Notes {
		fmt.Fprintf(w, "note     %s\n", n)
	}
	v := r.Verdict
	against := "(no line given: the signature and the model are not checked)"
	if r.Checked {
		against = "for line " + r.Line
	}
	if v.Pass {
		fmt.Fprintf(w, "verdict  PASS %s\n", against)
		return
	}
	fmt.Fprintf(w, "verdict  REFUSED %s: %s (%s)\n", against, v.Reason, v.Cause)
	for _, p := range v.Problems {
		fmt.Fprintf(w, "  - %s: %s\n", p.Cause, p.Text)
	}
	fmt.Fprintf(w, "what to do: %s\n", lines.ImageCauseFor(v.Cause).Do)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
