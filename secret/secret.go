// Package secret holds credentials (vault API keys, signing-log keys, console
// passwords) in a type that cannot leak by accident.
//
// A Value prints as "[redacted]" through fmt (every verb, including %#v),
// encoding/json, encoding.TextMarshaler and zerolog, so logging a struct that
// holds one is safe. The only way to the clear text is Reveal, which call
// sites use at the moment the secret leaves the process (an HTTP header, a
// console login).
package secret

import (
	"fmt"
	"log/slog"
)

// Redacted is what a Value prints as.
const Redacted = "[redacted]"

// Value is a secret string. The zero Value is empty.
type Value struct {
	// s is unexported and reached only through Reveal.
	s string
}

// New wraps clear text in a Value.
func New(clear string) Value { return Value{s: clear} }

// Reveal returns the clear text. Call it only where the secret is sent.
func (v Value) Reveal() string { return v.s }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return v.s == "" }

// Equal compares two secrets without revealing either.
func (v Value) Equal(o Value) bool { return v.s == o.s }

// String implements fmt.Stringer.
func (v Value) String() string { return Redacted }

// GoString implements fmt.GoStringer so %#v stays redacted.
func (v Value) GoString() string { return "secret.Value(" + Redacted + ")" }

// Format implements fmt.Formatter so that every verb (%s, %v, %q, %x, %+v)
// prints the redacted form.
func (v Value) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		fmt.Fprintf(f, "%q", Redacted)
	default:
		if verb == 'v' && f.Flag('#') {
			_, _ = f.Write([]byte(v.GoString()))
			return
		}
		_, _ = f.Write([]byte(Redacted))
	}
}

// MarshalJSON implements json.Marshaler.
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler (YAML, TOML, text logs).
func (v Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue implements slog.LogValuer.
func (v Value) LogValue() slog.Value { return slog.StringValue(Redacted) }
