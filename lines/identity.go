package lines

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"github.com/flashstation/flashstation/serialvault"
)

var placeholder = regexp.MustCompile(`\{[^{}]*\}`)

// serialFields are what an expected-serial template may use.
var serialFields = []string{"hw", "slot", "line", "station"}

// ExpandSerial fills an expected-serial template. A value a template uses
// that is empty is an error (a board without a hardware serial), as is a
// result not in the strict serial form.
func ExpandSerial(template string, values map[string]string) (string, error) {
	var missing []string
	out := placeholder.ReplaceAllStringFunc(template, func(ph string) string {
		name := ph[1 : len(ph)-1]
		v, ok := values[name]
		if !ok || v == "" {
			missing = append(missing, ph)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("expected serial %q: no value for %s", template, strings.Join(missing, ", "))
	}
	if !serialvault.ValidSerial(out) {
		return "", fmt.Errorf("expected serial %q gives %q, not in the strict serial form", template, out)
	}
	return out, nil
}

// checkSerialTemplate reports what is wrong with an expected-serial.
func checkSerialTemplate(t string) error {
	if t == ExpectedSerialUnknown {
		return nil
	}
	sample := map[string]string{}
	for _, f := range serialFields {
		sample[f] = "X1"
	}
	for _, ph := range placeholder.FindAllString(t, -1) {
		if _, ok := sample[ph[1:len(ph)-1]]; !ok {
			return fmt.Errorf("unknown field %s (want {%s}, or %q when the line cannot predict serials)", ph, strings.Join(serialFields, "}, {"), ExpectedSerialUnknown)
		}
	}
	if strings.ContainsAny(placeholder.ReplaceAllString(t, ""), "{}") {
		return fmt.Errorf("unbalanced braces in %q", t)
	}
	_, err := ExpandSerial(t, sample)
	return err
}

// PredictsSerials reports whether the line knows each board's serial.
func (l *Line) PredictsSerials() bool { return l.Registration.ExpectedSerial != ExpectedSerialUnknown }

// AllowPrefixes are the line's proxy.allow ranges.
func (l *Line) AllowPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, a := range l.Proxy.Allow {
		p, err := parseAllow(a)
		if err != nil {
			return nil, fmt.Errorf("line %s: proxy.allow: %w", l.ID, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseAllow(a string) (netip.Prefix, error) {
	if strings.Contains(a, "/") {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address range (want e.g. 10.42.0.0/24)", a)
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(a)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or range (want e.g. 10.42.0.0/24 or 10.42.0.7)", a)
	}
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// loopbackListen reports whether a listen address takes connections from
// this machine only.
func loopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
