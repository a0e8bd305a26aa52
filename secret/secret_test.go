package secret_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/flashstation/flashstation/secret"
)

const clear = "s3cr3t-api-key-0123456789"

type holder struct {
	Name string
	Key  secret.Value
	Ptr  *secret.Value
}

func TestValueNeverPrintsClearText(t *testing.T) {
	v := secret.New(clear)
	h := holder{Name: "line1", Key: v, Ptr: &v}
	jsonBytes, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var zl bytes.Buffer
	log := zerolog.New(&zl)
	log.Info().Interface("h", h).Stringer("k", v).Any("p", &v).Msgf("%v %s", v, v)
	var sl bytes.Buffer
	slog.New(slog.NewJSONHandler(&sl, nil)).Info("x", "k", v, "h", h)

	outputs := map[string]string{
		"%v":      fmt.Sprintf("%v", v),
		"%+v":     fmt.Sprintf("%+v", h),
		"%#v":     fmt.Sprintf("%#v", h),
		"%s":      fmt.Sprintf("%s", v),
		"%q":      fmt.Sprintf("%q", v),
		"%x":      fmt.Sprintf("%x", v),
		"%d":      fmt.Sprintf("%d", v),
		"Sprint":  fmt.Sprint(v, &v),
		"Println": fmt.Sprintln(h),
		"json":    string(jsonBytes),
		"zerolog": zl.String(),
		"slog":    sl.String(),
		"error":   fmt.Errorf("vault refused key %v", v).Error(),
	}
	for name, out := range outputs {
		if strings.Contains(out, clear) || strings.Contains(out, fmt.Sprintf("%x", clear)) {
			t.Errorf("%s leaked the secret: %s", name, out)
		}
		if !strings.Contains(out, secret.Redacted) {
			t.Errorf("%s does not show %s: %s", name, secret.Redacted, out)
		}
	}
}

func TestReveal(t *testing.T) {
	v := secret.New(clear)
	if v.Reveal() != clear {
		t.Fatalf("Reveal = %q", v.Reveal())
	}
	if v.IsZero() || !secret.New("").IsZero() {
		t.Fatal("IsZero wrong")
	}
	if !v.Equal(secret.New(clear)) || v.Equal(secret.New("other")) {
		t.Fatal("Equal wrong")
	}
}
