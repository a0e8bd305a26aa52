package lines

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/flashstation/flashstation/internal/yamlbound"
	"github.com/flashstation/flashstation/secret"
)

// Station is one bench PC's configuration: the production lines it serves
// and its slots (physical USB ports with a board's console).
type Station struct {
	// ID names the station in the ledger and in exports.
	ID string
	// DataDir holds the ledger, transcripts, the image cache and logs.
	DataDir string
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string
	Lines    []Line
	Slots    []Slot
	// Metrics is where the station serves Prometheus metrics (off
	// unless its Listen is set).
	Metrics Metrics
	// Ledger is the factory ledger the station forwards its record to
	// (none unless its URL is set).
	Ledger FactoryLedger

	// Path is the configuration file as given; Dir is its absolute
	// directory, against which relative paths in the file are resolved.
	Path string
	Dir  string
}

// Line is one production line: a model, its image and its Serial Vault.
type Line struct {
	ID   string
	Name string // display name; defaults to ID
	// Model is the signed model assertion file for the line's devices.
	Model string
	// BrandKeys are files holding the brand's trusted keys: account-key
	// assertions or encoded public keys.
	BrandKeys []string
	Image     Image
	Vault     Vault
	Proxy     Proxy
	// Registration says which serial each board of the line proposes.
	Registration Registration
	Capture      Capture
	Boot         Boot
	Fastboot     Fastboot
	// Trays are where the operator puts the line's boards.
	Trays Trays
}

// Trays name where the operator puts a line's boards once their verdict
// is in: the bench cards say "→ PASS tray" or "→ REJECT tray".
type Trays struct {
	Pass   string // default "PASS tray"
	Reject string // default "REJECT tray"
}

// Default tray names.
const (
	DefaultPassTray   = "PASS tray"
	DefaultRejectTray = "REJECT tray"
)

// Image is the line's production image.
type Image struct {
	File string // raw, .zst, .gz or .xz
	Bmap string // optional block map
	// SHA256 is the optional expected SHA-256 of File as given (compressed
	// or not), as published in a SHA256SUMS file; lowercase hex.
	SHA256 string
	// AllowDangerous lets the image identity gate pass a dangerous-grade
	// (development) image: for development lines only.
	AllowDangerous bool
}

// Vault is how the station reaches the line's Serial Vault.
type Vault struct {
	URL        string    // signing service base URL, e.g. http://vault:8080/v1/
	APIKey     SecretRef // the model's api-key
	CAFile     string    // optional CA bundle for an https URL
	SigningLog *SigningLog
}

// SigningLog is optional access to the vault's admin signing log, used to
// cross-check captured assertions.
type SigningLog struct {
	URL  string // admin service base URL, e.g. http://vault:8081/
	User string
	Key  SecretRef
}

// Proxy is the line's recording proxy, where the gadget's
// device-service.url points.
type Proxy struct {
	Listen string // host:port
	// Allow are the address ranges of the bench network (CIDR prefixes or
	// single addresses) that may call the proxy; empty: loopback only.
	Allow []string
}

// Registration is how the station knows which serial a board proposes.
type Registration struct {
	// ExpectedSerial derives the serial the gadget proposes for a board
	// from what the station knows of it: a template of {hw} (the board's
	// hardware serial: the USB serial string, fastboot's serialno), {slot},
	// {line} and {station}, default "{hw}". "unknown" is a line that cannot
	// predict serials: its proxy then takes a request only while exactly
	// one of its boards is registering.
	ExpectedSerial string
}

// ExpectedSerialUnknown is the expected-serial of a line that cannot
// predict its boards' serials.
const ExpectedSerialUnknown = "unknown"

// DefaultExpectedSerial is a board's hardware serial.
const DefaultExpectedSerial = "{hw}"

// Capture methods.
const (
	CaptureProxy   = "proxy"
	CaptureConsole = "console"
)

// Capture says how the line's serial assertions reach the station.
type Capture struct {
	Method string // proxy (default) or console
	// User and Password are the console login of the line's factory user:
	// the console method reads the serial with it; on a proxy line it
	// checks that the board holds the identity the proxy recorded.
	User     string
	Password SecretRef
}

// Boot triggers.
const (
	TriggerFastbootReboot = "fastboot-reboot"
	TriggerHubPower       = "hub-power"
	TriggerConsole        = "console"
	TriggerManual         = "manual"
)

// Boot says how the first boot is started and watched.
type Boot struct {
	// Profile is a built-in profile name (uc16, uc18, uc20, uc22, uc24) or
	// a profile file.
	Profile string
	Trigger string
	// ConsoleCommand is what the console trigger types after leaving the
	// bootloader's ums or fastboot mode with Ctrl-C (default "reset").
	ConsoleCommand string
}

// Fastboot holds the line's fastboot settings.
type Fastboot struct {
	Partition string // default mmc0
}

// Slot methods.
const (
	MethodUMS      = "ums"
	MethodFastboot = "fastboot"
)

// Slot is one physical bench position: a USB port (and maybe its
// SuperSpeed twin), the board's console and an optional switchable hub port.
type Slot struct {
	ID       string
	Line     string
	USBPorts []string // sysfs port paths such as 1-1.4.2
	Method   string   // ums or fastboot
	Console  Console
	Power    *Power
	Disabled bool
}

// Console is a slot's serial console.
type Console struct {
	// Port is a device path (/dev/ttyUSB0, /dev/serial/by-id/...,
	// /dev/serial/by-path/...) or the USB port path of the adapter.
	Port string
	Baud int // default 115200
}

// Power is a per-port switchable hub port (as uhubctl names them).
type Power struct {
	Hub  string // the hub's port path, e.g. 1-1.4
	Port int    // the hub's downstream port, from 1
}

// SecretRef says where a secret comes from: a file or an environment
// variable, never the configuration file itself.
type SecretRef struct {
	File string
	Env  string
}

// IsSet reports whether the reference names a source.
func (r SecretRef) IsSet() bool { return r.File != "" || r.Env != "" }

// String describes the source without the secret.
func (r SecretRef) String() string {
	switch {
	case r.File != "":
		return "file " + r.File
	case r.Env != "":
		return "environment variable " + r.Env
	}
	return "nothing"
}

// Resolve reads the secret. Surrounding whitespace (a trailing newline in a
// file) is removed; an empty secret is an error. Errors name the source,
// never the content.
func (r SecretRef) Resolve() (secret.Value, error) {
	var v string
	switch {
	case r.File != "":
		b, err := os.ReadFile(r.File)
		if err != nil {
			return secret.Value{}, fmt.Errorf("read secret: %w", err)
		}
		v = string(b)
	case r.Env != "":
		var ok bool
		v, ok = os.LookupEnv(r.Env)
		if !ok {
			return secret.Value{}, fmt.Errorf("environment variable %s is not set", r.Env)
		}
	default:
		return secret.Value{}, fmt.Errorf("no secret source configured")
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return secret.Value{}, fmt.Errorf("secret from %s is empty", r)
	}
	return secret.New(v), nil
}

// LineByID returns the line with the given id.
func (s *Station) LineByID(id string) (*Line, bool) {
	for i := range s.Lines {
		if s.Lines[i].ID == id {
			return &s.Lines[i], true
		}
	}
	return nil, false
}

// SlotsOf returns the slots serving a line, in file order.
func (s *Station) SlotsOf(lineID string) []Slot {
	var out []Slot
	for _, sl := range s.Slots {
		if sl.Line == lineID {
			out = append(out, sl)
		}
	}
	return out
}

// MaxStationBytes bounds a station file. A bench of 64 slots is about
// 10 KiB of YAML; 1 MiB is a hundred times that and still parses in well
// under a second (BenchmarkParseMaxSize).
const MaxStationBytes = 1 << 20

// stationLimits bound station files: their size, their nesting and what
// their aliases and merge keys (<<: *slot) may expand to.
var stationLimits = yamlbound.Limits{
	What:          "station file",
	MaxBytes:      MaxStationBytes,
	MaxDepth:      maxDepth,
	MaxAliasNodes: yamlbound.DefaultMaxAliasNodes,
}

// Load reads, decodes and validates a station file. It returns the
// configuration and every problem found; the configuration is usable only
// when problems holds no errors (warnings are fine). err is set for a file
// that cannot be read at all, or is larger than MaxStationBytes.
func Load(path string) (*Station, Problems, error) {
	data, err := yamlbound.ReadFile(path, stationLimits)
	if err != nil {
		return nil, nil, err // names the file and says what failed
	}
	st, problems := Parse(path, data)
	return st, problems, nil
}

// LoadValid is Load for callers that need a usable configuration: any
// error-level problem is returned as a Problems error.
func LoadValid(path string) (*Station, Problems, error) {
	st, problems, err := Load(path)
	if err != nil {
		return nil, nil, err
	}
	if errs := problems.Errors(); len(errs) > 0 {
		return nil, problems, errs
	}
	return st, problems.Warnings(), nil
}

// Parse decodes and validates a station file's content. name is used in
// problems and to resolve relative paths (against its directory). The
// content is bounded like Load's (size, nesting, alias expansion); what
// is over a bound is one problem.
func Parse(name string, data []byte) (*Station, Problems) {
	w := newWalker(name)
	st := &Station{Path: name}
	if abs, err := filepath.Abs(filepath.Dir(name)); err == nil {
		st.Dir = abs
	} else {
		st.Dir = filepath.Dir(name)
	}
	if body := w.parseDocument(data); body != nil {
		w.pos[""] = nodePos(body)
		w.collectAnchors(body, 0)
		w.sortAnchors()
		decodeStation(w, body, st)
		validate(w, st)
	}
	w.problems.sort()
	return st, w.problems
}

func decodeStation(w *walker, n ast.Node, st *Station) {
	w.object(n, "",
		field{"station", func(n ast.Node, p string) {
			w.object(n, p,
				field{"id", w.str(&st.ID)},
				field{"data-dir", w.str(&st.DataDir)},
				field{"log-level", w.str(&st.LogLevel)},
				field{"metrics", func(n ast.Node, p string) {
					w.object(n, p, field{"listen", w.str(&st.Metrics.Listen)})
				}},
				field{"ledger", func(n ast.Node, p string) {
					w.object(n, p, field{"url", decodeSecretRef(w, &st.Ledger.URL)})
				}},
			)
		}},
		field{"lines", func(n ast.Node, p string) {
			w.list(n, p, func(_ int, e ast.Node, ep string) {
				var l Line
				decodeLine(w, e, ep, &l)
				st.Lines = append(st.Lines, l)
			})
		}},
		field{"slots", func(n ast.Node, p string) {
			w.list(n, p, func(_ int, e ast.Node, ep string) {
				var s Slot
				decodeSlot(w, e, ep, &s)
				st.Slots = append(st.Slots, s)
			})
		}},
	)
}

func decodeLine(w *walker, n ast.Node, path string, l *Line) {
	w.object(n, path,
		field{"id", w.str(&l.ID)},
		field{"name", w.str(&l.Name)},
		field{"model", w.str(&l.Model)},
		field{"brand-keys", w.strList(&l.BrandKeys)},
		field{"image", func(n ast.Node, p string) {
			w.object(n, p,
				field{"file", w.str(&l.Image.File)},
				field{"bmap", w.str(&l.Image.Bmap)},
				field{"sha256", w.str(&l.Image.SHA256)},
				field{"allow-dangerous", w.boolean(&l.Image.AllowDangerous)},
			)
		}},
		field{"vault", func(n ast.Node, p string) {
			w.object(n, p,
				field{"url", w.str(&l.Vault.URL)},
				field{"api-key", decodeSecretRef(w, &l.Vault.APIKey)},
				field{"ca-file", w.str(&l.Vault.CAFile)},
				field{"signing-log", func(n ast.Node, p string) {
					sl := &SigningLog{}
					if w.object(n, p,
						field{"url", w.str(&sl.URL)},
						field{"user", w.str(&sl.User)},
						field{"key", decodeSecretRef(w, &sl.Key)},
					) {
						l.Vault.SigningLog = sl
					}
				}},
			)
		}},
		field{"proxy", func(n ast.Node, p string) {
			w.object(n, p,
				field{"listen", w.str(&l.Proxy.Listen)},
				field{"allow", w.strList(&l.Proxy.Allow)},
			)
		}},
		field{"registration", func(n ast.Node, p string) {
			w.object(n, p, field{"expected-serial", w.str(&l.Registration.ExpectedSerial)})
		}},
		field{"capture", func(n ast.Node, p string) {
			w.object(n, p,
				field{"method", w.str(&l.Capture.Method)},
				field{"user", w.str(&l.Capture.User)},
				field{"password", decodeSecretRef(w, &l.Capture.Password)},
			)
		}},
		field{"boot", func(n ast.Node, p string) {
			w.object(n, p,
				field{"profile", w.str(&l.Boot.Profile)},
				field{"trigger", w.str(&l.Boot.Trigger)},
				field{"console-command", w.str(&l.Boot.ConsoleCommand)},
			)
		}},
		field{"fastboot", func(n ast.Node, p string) {
			w.object(n, p, field{"partition", w.str(&l.Fastboot.Partition)})
		}},
		field{"trays", func(n ast.Node, p string) {
			w.object(n, p,
				field{"pass", w.str(&l.Trays.Pass)},
				field{"reject", w.str(&l.Trays.Reject)},
			)
		}},
	)
}

func decodeSlot(w *walker, n ast.Node, path string, s *Slot) {
	w.object(n, path,
		field{"id", w.str(&s.ID)},
		field{"line", w.str(&s.Line)},
		field{"usb-ports", w.strList(&s.USBPorts)},
		field{"method", w.str(&s.Method)},
		field{"console", func(n ast.Node, p string) {
			w.object(n, p,
				field{"port", w.str(&s.Console.Port)},
				field{"baud", w.integer(&s.Console.Baud)},
			)
		}},
		field{"power", func(n ast.Node, p string) {
			pw := &Power{}
			if w.object(n, p,
				field{"hub", w.str(&pw.Hub)},
				field{"port", w.integer(&pw.Port)},
			) {
				s.Power = pw
			}
		}},
		field{"disabled", w.boolean(&s.Disabled)},
	)
}

// decodeSecretRef decodes {file: PATH} or {env: NAME}. A plain string is
// refused: secrets are never written in the configuration itself.
func decodeSecretRef(w *walker, dst *SecretRef) func(ast.Node, string) {
	return func(n ast.Node, path string) {
		if r := w.resolve(n, path); r != nil {
			if _, isScalar := scalarText(r); isScalar {
				w.errorf(nodePos(r), path, "secrets are not written in the configuration: use {file: PATH} or {env: NAME}")
				return
			}
		}
		w.object(n, path,
			field{"file", w.str(&dst.File)},
			field{"env", w.str(&dst.Env)},
		)
	}
}
