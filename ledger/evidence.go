package ledger

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

// Evidence is one unit and everything recorded about it: what QA looks
// at and exports.
type Evidence struct {
	Unit Unit `json:"unit"`
	// Image is the image the unit was flashed with: its batch identity
	// as the image identity gate passed it (empty fields for a batch
	// started before the gate).
	Image      ImageIdentity         `json:"image"`
	Events     []Event               `json:"events"`
	Assertions []SerialAssertion     `json:"-"`
	Flash      json.RawMessage       `json:"flash,omitempty"` // the flash event's figures
	Raw, Clean string                `json:"-"`               // transcript paths
	Files      map[string]Transcript `json:"-"`
	// Chain is the serial assertions' chain head when the evidence was
	// gathered, and Links the place of the unit's assertions in it: a
	// bundle can be checked against the ledger later.
	Chain ChainHead       `json:"ledger_chain"`
	Links []AssertionLink `json:"assertion_links"`
}

// AssertionLink is a serial assertion's place in the chain.
type AssertionLink struct {
	ID         int64  `json:"id"`
	Serial     string `json:"serial"`
	TextSHA256 string `json:"text_sha256"`
	PrevSHA256 string `json:"prev_sha256"`
	LinkSHA256 string `json:"link_sha256"`
}

// Evidence gathers a unit's evidence.
func (l *Ledger) Evidence(ctx context.Context, unitID int64) (Evidence, error) {
	u, err := l.Unit(ctx, unitID)
	if err != nil {
		return Evidence{}, err
	}
	b, err := l.Batch(ctx, u.BatchID)
	if err != nil {
		return Evidence{}, err
	}
	e := Evidence{Unit: u, Image: b.Image(), Files: map[string]Transcript{}}
	if e.Events, err = l.Events(ctx, u.ID); err != nil {
		return e, err
	}
	for _, ev := range e.Events {
		if ev.Kind == "flash" {
			e.Flash = ev.Data
		}
	}
	if e.Assertions, err = l.SerialAssertions(ctx, AssertionFilter{UnitID: u.ID}); err != nil {
		return e, err
	}
	// The chain the unit's assertions are in: the ledger's, or on a
	// factory ledger its bench's.
	if e.Chain, err = l.StationChainHead(ctx, u.StationID); err != nil {
		return e, err
	}
	if e.Links, err = l.assertionLinks(ctx, u.ID); err != nil {
		return e, err
	}
	ts, err := l.Transcripts(ctx, u.ID)
	if err != nil {
		return e, err
	}
	for _, t := range ts {
		e.Files[t.Kind] = t
		switch t.Kind {
		case TranscriptRaw:
			e.Raw = t.Path
		case TranscriptClean:
			e.Clean = t.Path
		}
	}
	return e, nil
}

func (l *Ledger) assertionLinks(ctx context.Context, unitID int64) ([]AssertionLink, error) {
	rows, err := l.r.QueryContext(ctx, `SELECT id, serial, text_sha256, prev_sha256, link_sha256 FROM serial_assertions
		WHERE unit_id = ? ORDER BY id`, unitID)
	if err != nil {
		return nil, fmt.Errorf("ledger: assertion links: %w", err)
	}
	defer rows.Close()
	out := []AssertionLink{}
	for rows.Next() {
		var a AssertionLink
		if err := rows.Scan(&a.ID, &a.Serial, &a.TextSHA256, &a.PrevSHA256, &a.LinkSHA256); err != nil {
			return nil, fmt.Errorf("ledger: assertion links: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// BundleName is the file name of a unit's evidence bundle.
func BundleName(u Unit) string {
	id := u.Serial
	if id == "" {
		id = u.HWSerial
	}
	return fmt.Sprintf("%s-unit%d.tar.gz", sanitize(id), u.ID)
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c == '-' || c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

// WriteBundle writes a unit's evidence as a tar.gz: unit.json (the unit,
// the image it was flashed with (image_sha256, model_digest, seed_label,
// model_sign_key, image_seal), its timeline, the ledger's chain head and
// its assertions' links), serial.assertion, flash.json, console.log
// (clean transcript) and console.raw (the bytes as received).
func WriteBundle(w io.Writer, e Evidence) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	unitJSON, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	var assertion []byte
	for i, a := range e.Assertions {
		if i > 0 {
			assertion = append(assertion, '\n')
		}
		assertion = append(assertion, a.Text...)
	}
	type file struct {
		name string
		data []byte
	}
	files := []file{{"unit.json", unitJSON}, {"serial.assertion", assertion}, {"flash.json", e.Flash}}
	for _, p := range []struct{ name, path, kind string }{{"console.log", e.Clean, TranscriptClean}, {"console.raw", e.Raw, TranscriptRaw}} {
		// The factory ledger holds the file; a bench has it beside its
		// ledger.
		data := e.Files[p.kind].Content
		if data == nil && p.path != "" {
			if data, err = os.ReadFile(p.path); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("bundle: %w", err)
			}
		}
		files = append(files, file{p.name, data})
	}
	now := time.Now()
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: now}); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
}

// WriteBundleFile writes a unit's evidence bundle to path, atomically.
func WriteBundleFile(path string, e Evidence) error {
	tmp := path + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := WriteBundle(f, e); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bundle: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
}
