package lines

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/charmbracelet/x/ansi"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/logging"
	"github.com/flashstation/flashstation/serialvault"
)

// Defaults applied by the loader.
const (
	DefaultBaud           = 115200
	DefaultPartition      = "mmc0"
	DefaultProfile        = "uc20"
	DefaultTrigger        = TriggerManual
	DefaultConsoleCommand = "reset"
	maxUSBPortsPerSlot    = 2
	maxHubPort            = 255

	// Files the check reads whole are bounded, so that a station file
	// naming a huge file or a device (/dev/zero) cannot stall it.
	maxAssertionBytes = 1 << 20  // a model assertion or a brand key file
	maxSecretBytes    = 64 << 10 // an api-key or password file
)

var (
	idPattern        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	usbPortPattern   = regexp.MustCompile(`^[0-9]{1,3}-[0-9]{1,3}(\.[0-9]{1,3}){0,6}$`)
	usbIfacePattern  = regexp.MustCompile(`^[0-9]{1,3}-[0-9]{1,3}(\.[0-9]{1,3}){0,6}(:[0-9]+\.[0-9]+)?$`)
	sha256Pattern    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	partitionPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
	envNamePattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// StandardBauds are the console rates a slot may use.
var StandardBauds = []int{
	1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000,
	576000, 921600, 1000000, 1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000,
}

// validate applies defaults, resolves relative paths and records every
// semantic problem.
func validate(w *walker, st *Station) {
	v := validator{w: w, st: st, lines: make(map[string]*Line, len(st.Lines))}
	for i := range st.Lines {
		if _, dup := v.lines[st.Lines[i].ID]; !dup {
			v.lines[st.Lines[i].ID] = &st.Lines[i]
			v.lineIDs = append(v.lineIDs, st.Lines[i].ID)
		}
	}
	v.station()
	for i := range st.Lines {
		v.line(i, &st.Lines[i])
	}
	for i := range st.Slots {
		v.slot(i, &st.Slots[i])
	}
	v.crossChecks()
}

type validator struct {
	w       *walker
	st      *Station
	lines   map[string]*Line // by id, the first of each id
	lineIDs []string         // distinct line ids, in file order
}

// MaxTrayWidth is the widest tray name: what the smallest slot card shows
// after its "→ ".
const MaxTrayWidth = 14

// trayDiffers is how many leading characters the two trays' names must
// differ in (case aside).
const trayDiffers = 6

func trayPrefix(s string) string {
	r := []rune(strings.ToLower(s))
	return string(r[:min(len(r), trayDiffers)])
}

func (v *validator) errorf(path, format string, args ...any) {
	v.w.add(v.w.at(path), path, false, format, args...)
}

// reported reports whether an error was already found at path or at one of
// its parents (a value of the wrong type), so that a "required" does not
// repeat it.
func (v *validator) reported(path string) bool { return v.w.reported(path) }

func (v *validator) warnf(path, format string, args ...any) {
	v.w.add(v.w.at(path), path, true, format, args...)
}

// abs resolves a path from the file against the file's directory.
func (v *validator) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(v.st.Dir, p)
}

func (v *validator) required(path, value string) bool {
	if strings.TrimSpace(value) == "" {
		v.missing(path, "required")
		return false
	}
	return true
}

// missing reports a missing value unless the decoder already explained why
// it is missing.
func (v *validator) missing(path, format string, args ...any) {
	if !v.reported(path) {
		v.errorf(path, format, args...)
	}
}

func (v *validator) id(path, value string) {
	if v.required(path, value) && !idPattern.MatchString(value) {
		v.errorf(path, "%q is not a valid id (letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63)", value)
	}
}

// file resolves *p and checks that it names a readable regular file of at
// most maxBytes (0: any size, the file is not read whole).
func (v *validator) file(path string, p *string, required bool, maxBytes int64) {
	if *p == "" {
		if required {
			v.missing(path, "required")
		}
		return
	}
	*p = v.abs(*p)
	fi, err := os.Stat(*p)
	switch {
	case os.IsNotExist(err):
		v.errorf(path, "file %s does not exist", *p)
	case err != nil:
		v.errorf(path, "cannot use %s: %v", *p, err)
	case fi.IsDir():
		v.errorf(path, "%s is a directory, want a file", *p)
	case !fi.Mode().IsRegular():
		v.errorf(path, "%s is not a regular file", *p)
	case maxBytes > 0 && fi.Size() > maxBytes:
		v.errorf(path, "%s is %d bytes, over the %d KiB a file of this kind may have", *p, fi.Size(), maxBytes>>10)
	default:
		f, err := os.Open(*p)
		if err != nil {
			v.errorf(path, "cannot read %s: %v", *p, err)
			return
		}
		f.Close()
	}
}

func (v *validator) station() {
	st := v.st
	v.id("station.id", st.ID)
	if v.required("station.data-dir", st.DataDir) {
		st.DataDir = v.abs(st.DataDir)
		if fi, err := os.Stat(st.DataDir); err == nil && !fi.IsDir() {
			v.errorf("station.data-dir", "%s exists and is not a directory", st.DataDir)
		}
	}
	if _, err := logging.ParseLevel(st.LogLevel); err != nil {
		v.errorf("station.log-level", "%v", err)
	}
	v.metrics()
	if _, given := v.w.pos["station.ledger"]; given {
		if !st.Ledger.URL.IsSet() && !v.reported("station.ledger.url") {
			v.errorf("station.ledger.url", "give the factory ledger's PostgreSQL URL as {env: NAME} or {file: PATH} (it may hold a password), or leave station.ledger out")
		} else {
			v.secretRef("station.ledger.url", &st.Ledger.URL, true)
		}
	}
	if len(st.Lines) == 0 {
		v.missing("lines", "at least one line is required")
	}
	if len(st.Slots) == 0 {
		v.missing("slots", "at least one slot is required")
	}
}

func (v *validator) line(i int, l *Line) {
	p := fmt.Sprintf("lines[%d]", i)
	v.id(p+".id", l.ID)
	if l.Name == "" {
		l.Name = l.ID
	}
	v.file(p+".model", &l.Model, true, maxAssertionBytes)
	if len(l.BrandKeys) == 0 {
		v.missing(p+".brand-keys", "at least one trusted brand key is required (account-key assertion or encoded public key file)")
	}
	if !v.reported(p + ".model") {
		if _, err := readModel(l.Model); err != nil {
			v.errorf(p+".model", "%s is not a usable model assertion: %v", l.Model, err)
		}
	}
	for k := range l.BrandKeys {
		kp := fmt.Sprintf("%s.brand-keys[%d]", p, k)
		v.file(kp, &l.BrandKeys[k], true, maxAssertionBytes)
		if !v.reported(kp) {
			if err := serialvault.NewKeyRing().AddFile(l.BrandKeys[k]); err != nil {
				v.errorf(kp, "not an account-key assertion or encoded public key: %v", err)
			}
		}
	}

	v.file(p+".image.file", &l.Image.File, true, 0)
	v.file(p+".image.bmap", &l.Image.Bmap, false, 0)
	if l.Image.SHA256 != "" {
		l.Image.SHA256 = strings.ToLower(l.Image.SHA256)
		if !sha256Pattern.MatchString(l.Image.SHA256) {
			v.errorf(p+".image.sha256", "want 64 hexadecimal digits, got %d characters", len(l.Image.SHA256))
		}
	}

	v.vault(p+".vault", &l.Vault)

	switch l.Capture.Method {
	case "":
		l.Capture.Method = CaptureProxy
	case CaptureProxy, CaptureConsole:
	default:
		v.errorf(p+".capture.method", "unknown method %q (want proxy or console)", l.Capture.Method)
	}
	switch l.Capture.Method {
	case CaptureProxy:
		if l.Proxy.Listen == "" {
			v.missing(p+".proxy.listen", "required with capture method proxy (the address the gadget's device-service.url points at)")
		}
		// A console login on a proxy line checks each board's identity.
		switch {
		case l.Capture.User != "":
			v.secretRef(p+".capture.password", &l.Capture.Password, true)
		case l.Capture.Password.IsSet():
			v.errorf(p+".capture.password", "a password without a user: give capture.user too (the console login that checks each board's identity)")
		}
	case CaptureConsole:
		v.required(p+".capture.user", l.Capture.User)
		v.secretRef(p+".capture.password", &l.Capture.Password, true)
	}
	if l.Proxy.Listen != "" {
		if err := checkListen(l.Proxy.Listen); err != nil {
			v.errorf(p+".proxy.listen", "%v", err)
		} else if l.Capture.Method == CaptureProxy && len(l.Proxy.Allow) == 0 && !loopbackListen(l.Proxy.Listen) {
			v.errorf(p+".proxy.listen", "%s takes connections from other machines: give proxy.allow (the bench network's address ranges, e.g. [10.42.0.0/24]) or listen on a loopback address", l.Proxy.Listen)
		}
	}
	for i, a := range l.Proxy.Allow {
		if _, err := parseAllow(a); err != nil {
			v.errorf(fmt.Sprintf("%s.proxy.allow[%d]", p, i), "%v", err)
		}
	}
	if l.Registration.ExpectedSerial == "" {
		l.Registration.ExpectedSerial = DefaultExpectedSerial
	}
	for _, t := range []struct {
		name string
		v    *string
		def  string
	}{{"pass", &l.Trays.Pass, DefaultPassTray}, {"reject", &l.Trays.Reject, DefaultRejectTray}} {
		switch {
		case *t.v == "":
			*t.v = t.def
		case ansi.StringWidth(*t.v) > MaxTrayWidth:
			v.errorf(p+".trays."+t.name, "%q is wider than %d characters: the smallest slot card could not show it whole", *t.v, MaxTrayWidth)
		case strings.ContainsFunc(*t.v, func(r rune) bool { return r < ' ' || r == 0x7f }):
			v.errorf(p+".trays."+t.name, "%q has control characters", *t.v)
		}
	}
	if a, b := trayPrefix(l.Trays.Pass), trayPrefix(l.Trays.Reject); a == b {
		v.errorf(p+".trays", "the pass and reject trays (%q, %q) start alike: on a small card a failed board would seem to go where the good ones go; make their first %d characters differ", l.Trays.Pass, l.Trays.Reject, trayDiffers)
	}
	if err := checkSerialTemplate(l.Registration.ExpectedSerial); err != nil {
		v.errorf(p+".registration.expected-serial", "%v", err)
	}

	if l.Boot.Profile == "" {
		l.Boot.Profile = DefaultProfile
	}
	if isProfileFile(l.Boot.Profile) {
		v.file(p+".boot.profile", &l.Boot.Profile, true, 0) // LoadProfile bounds its read
		if !v.reported(p + ".boot.profile") {
			if _, err := console.LoadProfile(l.Boot.Profile); err != nil {
				v.errorf(p+".boot.profile", "%v", err)
			}
		}
	} else if !slices.Contains(console.BuiltinProfiles, l.Boot.Profile) {
		v.errorf(p+".boot.profile", "unknown profile %q (built-in: %s, or a .yaml file)", l.Boot.Profile, strings.Join(console.BuiltinProfiles, ", "))
	}
	switch l.Boot.Trigger {
	case "":
		l.Boot.Trigger = DefaultTrigger
	case TriggerFastbootReboot, TriggerHubPower, TriggerConsole, TriggerManual:
	default:
		v.errorf(p+".boot.trigger", "unknown trigger %q (want fastboot-reboot, hub-power, console or manual)", l.Boot.Trigger)
	}
	if l.Boot.Trigger == TriggerConsole && l.Boot.ConsoleCommand == "" {
		l.Boot.ConsoleCommand = DefaultConsoleCommand
	}
	if l.Boot.Trigger != TriggerConsole && l.Boot.ConsoleCommand != "" {
		v.warnf(p+".boot.console-command", "used only with trigger console")
	}
	if l.Fastboot.Partition == "" {
		l.Fastboot.Partition = DefaultPartition
	} else if !partitionPattern.MatchString(l.Fastboot.Partition) {
		v.errorf(p+".fastboot.partition", "%q is not a partition name", l.Fastboot.Partition)
	}
}

func isProfileFile(s string) bool {
	return strings.ContainsRune(s, '/') || strings.HasSuffix(s, ".yaml") || strings.HasSuffix(s, ".yml")
}

func (v *validator) vault(p string, vt *Vault) {
	if v.required(p+".url", vt.URL) {
		if u, err := checkURL(vt.URL); err != nil {
			v.errorf(p+".url", "%v", err)
		} else if vt.CAFile != "" && u.Scheme != "https" {
			v.errorf(p+".ca-file", "a CA file is used only with an https URL")
		}
	}
	v.secretRef(p+".api-key", &vt.APIKey, true)
	v.file(p+".ca-file", &vt.CAFile, false, 0)
	if sl := vt.SigningLog; sl != nil {
		sp := p + ".signing-log"
		if v.required(sp+".url", sl.URL) {
			if _, err := checkURL(sl.URL); err != nil {
				v.errorf(sp+".url", "%v", err)
			}
		}
		v.required(sp+".user", sl.User)
		v.secretRef(sp+".key", &sl.Key, true)
	}
}

func checkURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("want an http or https URL, got %q", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("URL %q has no host", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("credentials do not belong in the URL; use api-key")
	}
	return u, nil
}

func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not between 1 and 65535", port)
	}
	if host != "" && net.ParseIP(host) == nil && !idPattern.MatchString(host) {
		return fmt.Errorf("%q is not a host name or IP address", host)
	}
	return nil
}

func (v *validator) secretRef(p string, r *SecretRef, required bool) {
	switch {
	case r.File != "" && r.Env != "":
		v.errorf(p, "give either file or env, not both")
	case r.File != "":
		v.file(p+".file", &r.File, true, maxSecretBytes)
		if v.reported(p + ".file") {
			return
		}
		if b, err := os.ReadFile(r.File); err == nil && strings.TrimSpace(string(b)) == "" {
			v.errorf(p+".file", "%s is empty", r.File)
		}
	case r.Env != "":
		if !envNamePattern.MatchString(r.Env) {
			v.errorf(p+".env", "%q is not an environment variable name", r.Env)
		} else if val, ok := os.LookupEnv(r.Env); !ok || strings.TrimSpace(val) == "" {
			v.warnf(p+".env", "environment variable %s is not set here; the station needs it when it runs", r.Env)
		}
	case required && !v.reported(p):
		v.errorf(p, "required: {file: PATH} or {env: NAME}")
	}
}

func (v *validator) slot(i int, s *Slot) {
	p := fmt.Sprintf("slots[%d]", i)
	v.id(p+".id", s.ID)
	var line *Line
	if v.required(p+".line", s.Line) {
		var ok bool
		if line, ok = v.lines[s.Line]; !ok {
			known := "the file defines no lines"
			if len(v.lineIDs) > 0 {
				known = "lines: " + strings.Join(v.lineIDs, ", ")
			}
			v.errorf(p+".line", "line %q is not defined (%s)", s.Line, known)
		}
	}
	switch {
	case len(s.USBPorts) == 0:
		v.missing(p+".usb-ports", "required: the slot's USB port path, e.g. 1-1.4.2 (see flashstation devices)")
	case len(s.USBPorts) > maxUSBPortsPerSlot:
		v.errorf(p+".usb-ports", "at most %d port paths (a port and its SuperSpeed twin), got %d", maxUSBPortsPerSlot, len(s.USBPorts))
	}
	for k, port := range s.USBPorts {
		if !usbPortPattern.MatchString(port) {
			v.errorf(fmt.Sprintf("%s.usb-ports[%d]", p, k), "%q is not a USB port path (bus-port.port..., e.g. 1-1.4.2)", port)
		}
	}
	switch s.Method {
	case "":
		v.missing(p+".method", "required: ums or fastboot")
	case MethodUMS, MethodFastboot:
	default:
		v.errorf(p+".method", "unknown method %q (want ums or fastboot)", s.Method)
	}
	if v.required(p+".console.port", s.Console.Port) {
		if !filepath.IsAbs(s.Console.Port) && !usbIfacePattern.MatchString(s.Console.Port) {
			v.errorf(p+".console.port", "%q is neither a device path (/dev/ttyUSB0, /dev/serial/by-id/...) nor a USB port path (1-1.4.2)", s.Console.Port)
		}
	}
	if s.Console.Baud == 0 {
		s.Console.Baud = DefaultBaud
	} else if !slices.Contains(StandardBauds, s.Console.Baud) {
		v.errorf(p+".console.baud", "%d is not a standard baud rate (115200 is usual)", s.Console.Baud)
	}
	if s.Power != nil {
		if !usbPortPattern.MatchString(s.Power.Hub) {
			v.errorf(p+".power.hub", "%q is not a hub port path (e.g. 1-1.4)", s.Power.Hub)
		}
		if s.Power.Port < 1 || s.Power.Port > maxHubPort {
			v.errorf(p+".power.port", "%d is not a hub port number (1 to %d)", s.Power.Port, maxHubPort)
		} else if usbPortPattern.MatchString(s.Power.Hub) && len(s.USBPorts) > 0 && !feeds(s.Power, s.USBPorts) {
			v.errorf(p+".power", "hub %s port %d does not feed the slot's USB port %s: a power cycle would hit another board",
				s.Power.Hub, s.Power.Port, s.USBPorts[0])
		}
	}
	if line != nil {
		if line.Boot.Trigger == TriggerFastbootReboot && s.Method != MethodFastboot && s.Method != "" {
			v.errorf(p+".method", "line %s boots with fastboot-reboot, which needs method fastboot", line.ID)
		}
		if line.Boot.Trigger == TriggerHubPower && s.Power == nil {
			v.errorf(p+".power", "line %s boots with hub-power, which needs the slot's hub power port", line.ID)
		}
	}
}

// feeds reports whether the hub port is one of the USB ports or upstream of
// one of them.
func feeds(pw *Power, ports []string) bool {
	prefix := fmt.Sprintf("%s.%d", pw.Hub, pw.Port)
	for _, port := range ports {
		if port == prefix || strings.HasPrefix(port, prefix+".") {
			return true
		}
	}
	return false
}

// crossChecks finds duplicates across lines and slots.
func (v *validator) crossChecks() {
	type owner struct{ path, what string }
	unique := func(kind string) func(key, path, what string) {
		seen := map[string]owner{}
		return func(key, path, what string) {
			if key == "" {
				return
			}
			if first, dup := seen[key]; dup {
				v.errorf(path, "duplicate %s %q: already used by %s (%s, line %d)", kind, key, first.what, first.path, v.w.at(first.path).Line)
				return
			}
			seen[key] = owner{path, what}
		}
	}
	lineID := unique("line id")
	listen := unique("proxy port")
	served := make(map[string]bool, len(v.st.Lines))
	for _, s := range v.st.Slots {
		served[s.Line] = true
	}
	for i, l := range v.st.Lines {
		p := fmt.Sprintf("lines[%d]", i)
		lineID(l.ID, p+".id", "another line")
		if l.Capture.Method == CaptureProxy {
			if _, port, err := net.SplitHostPort(l.Proxy.Listen); err == nil {
				// Two lines cannot share a port: a wildcard address binds them all.
				listen(port, p+".proxy.listen", "line "+l.ID)
			}
		}
		if !served[l.ID] && l.ID != "" {
			v.warnf(p, "no slot serves line %s", l.ID)
		}
	}
	slotID := unique("slot id")
	usbPort := unique("USB port")
	console := unique("console port")
	power := unique("hub power port")
	for i, s := range v.st.Slots {
		p := fmt.Sprintf("slots[%d]", i)
		slotID(s.ID, p+".id", "another slot")
		for k, port := range s.USBPorts {
			usbPort(port, fmt.Sprintf("%s.usb-ports[%d]", p, k), "slot "+s.ID)
		}
		console(s.Console.Port, p+".console.port", "slot "+s.ID)
		if s.Power != nil && s.Power.Port > 0 {
			power(fmt.Sprintf("%s port %d", s.Power.Hub, s.Power.Port), p+".power", "slot "+s.ID)
		}
	}
}
