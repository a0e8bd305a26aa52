package console

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/flashstation/flashstation/internal/yamlbound"
)

// Reason codes of a failed boot, for operators (the README has the table).
const (
	ReasonNoOutput        = "no-output"        // nothing at all on the console
	ReasonBaudMismatch    = "baud-mismatch"    // only garbage: wrong baud rate or line noise
	ReasonBootloaderError = "bootloader-error" // U-Boot gave up
	ReasonKernelPanic     = "kernel-panic"
	ReasonBootLoop        = "boot-loop" // installed twice, or rebooted again
	ReasonSeedError       = "seed-error"
	ReasonSeedLabel       = "seed-label-mismatch" // the board booted another recovery system than the image's (Machine.ExpectSeedLabel)
	ReasonStageTimeout    = "stage-timeout"       // a stage's marker never came
	ReasonBootTimeout     = "boot-timeout"        // the whole-boot cap
	ReasonUnplugged       = "console-unplugged"
	ReasonPortBusy        = "port-busy"
	ReasonPortMissing     = "port-missing"
	ReasonPortPermission  = "port-permission"
	ReasonPort            = "port-error"
)

// FailPattern fails the boot when a line matches.
type FailPattern struct {
	Re     *regexp.Regexp
	Reason string
}

// Stage is one step of a boot, reached when one of its markers shows on
// the console. Its timeout bounds the wait for it, counted from the moment
// the previous stage was reached. An optional stage that does not come is
// skipped when its timeout ends; a later stage's marker skips it at once.
type Stage struct {
	Name     string
	Markers  []*regexp.Regexp
	Optional bool
	Timeout  time.Duration
	// FailOn applies while waiting for this stage.
	FailOn []FailPattern
	// Prompt markers match the line still being received (a login prompt
	// never ends with a newline).
	Prompt []*regexp.Regexp
}

// Profile describes how a board's first boot looks on its console.
type Profile struct {
	Name   string
	Stages []Stage
	// FailOn applies in every stage.
	FailOn []FailPattern
	// FirstBytes bounds the wait for the first byte after the port opens.
	FirstBytes time.Duration
	// WholeBoot caps the whole boot.
	WholeBoot time.Duration
	// Install markers; seeing them once the install boot is done is a
	// boot loop. Bootloader banners beyond MaxBanners are one too.
	InstallMarkers []*regexp.Regexp
	BannerMarkers  []*regexp.Regexp
	MaxBanners     int
}

// Stage returns the named stage.
func (p *Profile) Stage(name string) (*Stage, bool) {
	for i := range p.Stages {
		if p.Stages[i].Name == name {
			return &p.Stages[i], true
		}
	}
	return nil, false
}

func res(patterns ...string) []*regexp.Regexp {
	out := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		out[i] = regexp.MustCompile(p)
	}
	return out
}

func fails(reason string, patterns ...string) []FailPattern {
	out := make([]FailPattern, len(patterns))
	for i, p := range patterns {
		out[i] = FailPattern{Re: regexp.MustCompile(p), Reason: reason}
	}
	return out
}

// Patterns shared by the built-in profiles.
var (
	bannerPattern = `U-Boot( SPL)? \d{4}\.\d{2}`
	ubootErrors   = fails(ReasonBootloaderError, `Resetting CPU`, `Must RESET board to recover`, `Retry count exceeded`, `File not found`, `Wrong Image Format for boot`, `Bad Linux ARM64 Image magic!`, `zimage: Bad magic!`, `Ramdisk image is corrupt`)
	seedErrors    = fails(ReasonSeedError, `cannot run snapd from the seed`, `error: cannot perform the following tasks`)
	readyMarkers  = []string{`Press enter to configure\.`, `Ubuntu Core \d+ on \S+ \(tty\S+\)`}
	readyPrompt   = []string{`login: ?$`}
	seededMarkers = []string{`Mark system seeded`, `Started Wait until snapd is fully seeded`}
	seedingOutput = []string{`Mount snap "`, `Setup snap "`, `Ensure prerequisites for "`}
	kernelMarkers = []string{`Booting Linux on physical CPU`, `Linux version \d`, `Welcome to Ubuntu Core`}
	// The install boot is the kernel's: U-Boot's extlinux echoes the command
	// line it passes ("append: ... snapd_recovery_mode=install") before any
	// kernel runs, so only the kernel's own line marks it.
	installMarkers = []string{`Kernel command line:.*snapd_recovery_mode=install`, `Installing the system`}
)

func concat[T any](parts ...[]T) []T {
	var out []T
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// uc20 is the UC20+ first boot: install boot, reboot, run boot with seeding.
func uc20(name string) *Profile {
	return &Profile{
		Name:       name,
		FirstBytes: 30 * time.Second,
		WholeBoot:  30 * time.Minute,
		Stages: []Stage{
			{Name: "bootloader", Optional: true, Timeout: 60 * time.Second,
				Markers: res(bannerPattern, `Starting kernel`), FailOn: ubootErrors},
			{Name: "install-boot", Timeout: 15 * time.Minute,
				Markers: res(installMarkers...), FailOn: ubootErrors},
			{Name: "run-boot", Timeout: 5 * time.Minute,
				Markers: res(concat([]string{`snapd_recovery_mode=run`, bannerPattern}, seedingOutput)...),
				FailOn:  ubootErrors},
			{Name: "seeding", Timeout: 20 * time.Minute, Markers: res(seededMarkers...)},
			{Name: "console-ready", Timeout: 3 * time.Minute, Markers: res(readyMarkers...), Prompt: res(readyPrompt...)},
		},
		FailOn:         seedErrors,
		InstallMarkers: res(installMarkers...),
		BannerMarkers:  res(bannerPattern),
		MaxBanners:     2,
	}
}

// uc16 is the UC16/UC18 first boot: one boot that seeds.
func uc16(name string) *Profile {
	return &Profile{
		Name:       name,
		FirstBytes: 30 * time.Second,
		WholeBoot:  30 * time.Minute,
		Stages: []Stage{
			{Name: "bootloader", Optional: true, Timeout: 60 * time.Second,
				Markers: res(bannerPattern, `Starting kernel`), FailOn: ubootErrors},
			{Name: "kernel", Optional: true, Timeout: 2 * time.Minute, Markers: res(kernelMarkers...), FailOn: ubootErrors},
			{Name: "seeding", Timeout: 20 * time.Minute, Markers: res(seededMarkers...)},
			{Name: "console-ready", Timeout: 3 * time.Minute, Markers: res(readyMarkers...), Prompt: res(readyPrompt...)},
		},
		FailOn:        seedErrors,
		BannerMarkers: res(bannerPattern),
		MaxBanners:    1,
	}
}

// BuiltinProfiles names the profiles known without a file.
var BuiltinProfiles = []string{"uc16", "uc18", "uc20", "uc22", "uc24"}

// Builtin returns a built-in profile (a fresh copy).
func Builtin(name string) (*Profile, bool) {
	switch name {
	case "uc16", "uc18":
		return uc16(name), true
	case "uc20", "uc22", "uc24":
		return uc20(name), true
	}
	return nil, false
}

// MaxProfileBytes bounds a profile file. A profile is a few KiB; 256 KiB is
// a hundred times that and still parses in a fraction of a second.
const MaxProfileBytes = 256 << 10

// profileLimits bound profile files, which come from outside (a station
// file names them, an operator passes them to watch).
var profileLimits = yamlbound.Limits{
	What:          "boot profile",
	MaxBytes:      MaxProfileBytes,
	MaxDepth:      yamlbound.DefaultMaxDepth,
	MaxAliasNodes: yamlbound.DefaultMaxAliasNodes,
}

// LoadProfile returns a built-in profile by name or reads a profile file
// (a name with a "/" or a .yaml/.yml suffix). Errors about the file's
// content name it as FILE:LINE:COLUMN where the place is known.
func LoadProfile(nameOrFile string) (*Profile, error) {
	if p, ok := Builtin(nameOrFile); ok {
		return p, nil
	}
	if !strings.ContainsRune(nameOrFile, '/') && !strings.HasSuffix(nameOrFile, ".yaml") && !strings.HasSuffix(nameOrFile, ".yml") {
		return nil, fmt.Errorf("unknown boot profile %q (built-in: %s, or a .yaml file)", nameOrFile, strings.Join(BuiltinProfiles, ", "))
	}
	data, err := yamlbound.ReadFile(nameOrFile, profileLimits)
	if err != nil {
		return nil, err
	}
	p, err := ParseProfileFile(nameOrFile, data)
	if err != nil {
		return nil, fmt.Errorf("boot profile: %w", err)
	}
	return p, nil
}

// profileFile is a profile file: a built-in base with overrides, or a
// whole profile.
type profileFile struct {
	Name       string      `yaml:"name"`
	Base       string      `yaml:"base"`
	FirstBytes string      `yaml:"first-bytes"`
	WholeBoot  string      `yaml:"whole-boot"`
	MaxBanners *int        `yaml:"max-bootloader-banners"`
	Install    []string    `yaml:"install-markers"`
	FailOn     []failFile  `yaml:"fail-on"`
	Stages     []stageFile `yaml:"stages"`
}

type stageFile struct {
	Name     string     `yaml:"name"`
	Markers  []string   `yaml:"markers"`
	Prompt   []string   `yaml:"prompt"`
	Optional *bool      `yaml:"optional"`
	Timeout  string     `yaml:"timeout"`
	FailOn   []failFile `yaml:"fail-on"`
}

type failFile struct {
	Pattern string `yaml:"pattern"`
	Reason  string `yaml:"reason"`
}

// ParseProfile reads a profile file's content; errors name it "profile".
func ParseProfile(data []byte) (*Profile, error) {
	return ParseProfileFile("profile", data)
}

// ParseProfileFile reads a profile file's content; name is the file in
// errors. With `base`, the file starts from that built-in profile: each
// listed stage overrides the named stage's fields (markers and fail-on
// replace the base's; timeouts and optional change). Without a base, the
// stages listed are the whole profile, in order. The content is bounded
// (size, nesting, alias expansion: see yamlbound) and every error is a
// *yamlbound.Error with the place of the field at fault.
func ParseProfileFile(name string, data []byte) (*Profile, error) {
	tree, err := yamlbound.Parse(name, data, profileLimits)
	if err != nil {
		return nil, err
	}
	body, err := yamlbound.Body(name, tree)
	if err != nil {
		return nil, err
	}
	var f profileFile
	if body != nil {
		if err := yamlbound.DecodeNode(name, body, &f, yaml.DisallowUnknownField(), yaml.Strict()); err != nil {
			return nil, err
		}
	}
	// at is an error at a field path of the file.
	at := func(path, format string, args ...any) error {
		e := &yamlbound.Error{File: name, Msg: fmt.Sprintf(format, args...)}
		if path != "" {
			e.Msg = path + ": " + e.Msg
		}
		if body != nil {
			e.Line, e.Col = yamlbound.Position(body, path)
		}
		return e
	}
	var p *Profile
	if f.Base != "" {
		base, ok := Builtin(f.Base)
		if !ok {
			return nil, at("base", "%q is not a built-in profile (%s)", f.Base, strings.Join(BuiltinProfiles, ", "))
		}
		p = base
	} else {
		if len(f.Stages) == 0 {
			return nil, at("", "a profile without a base needs stages")
		}
		p = &Profile{FirstBytes: 30 * time.Second, WholeBoot: 30 * time.Minute, BannerMarkers: res(bannerPattern), MaxBanners: 2}
	}
	p.Name = f.Name
	if p.Name == "" {
		p.Name = "custom"
	}
	// err (nil here) keeps the first error about a value; the walk goes on.
	dur := func(field, s string, dst *time.Duration) {
		if s == "" || err != nil {
			return
		}
		d, perr := time.ParseDuration(s)
		if perr != nil || d <= 0 {
			err = at(field, "%q is not a duration such as 90s or 20m", s)
			return
		}
		*dst = d
	}
	dur("first-bytes", f.FirstBytes, &p.FirstBytes)
	dur("whole-boot", f.WholeBoot, &p.WholeBoot)
	if f.MaxBanners != nil {
		p.MaxBanners = *f.MaxBanners
	}
	compile := func(field string, pats []string) []*regexp.Regexp {
		var out []*regexp.Regexp
		for i, s := range pats {
			re, cerr := regexp.Compile(s)
			if cerr != nil && err == nil {
				err = at(fmt.Sprintf("%s[%d]", field, i), "%q: %v", s, cerr)
			}
			if cerr == nil {
				out = append(out, re)
			}
		}
		return out
	}
	failList := func(field string, fs []failFile) []FailPattern {
		var out []FailPattern
		for i, ff := range fs {
			re, cerr := regexp.Compile(ff.Pattern)
			if cerr != nil && err == nil {
				err = at(fmt.Sprintf("%s[%d].pattern", field, i), "%q: %v", ff.Pattern, cerr)
			}
			reason := ff.Reason
			if reason == "" {
				reason = "fail-pattern"
			}
			if cerr == nil {
				out = append(out, FailPattern{Re: re, Reason: reason})
			}
		}
		return out
	}
	if f.Install != nil {
		p.InstallMarkers = compile("install-markers", f.Install)
	}
	p.FailOn = append(p.FailOn, failList("fail-on", f.FailOn)...)
	for i, sf := range f.Stages {
		field := fmt.Sprintf("stages[%d]", i)
		if sf.Name == "" {
			return nil, at(field+".name", "name required")
		}
		var st *Stage
		if f.Base != "" {
			var ok bool
			if st, ok = p.Stage(sf.Name); !ok {
				var names []string
				for _, s := range p.Stages {
					names = append(names, s.Name)
				}
				return nil, at(field+".name", "base %s has no stage %q (stages: %s)", f.Base, sf.Name, strings.Join(names, ", "))
			}
		} else {
			if _, dup := p.Stage(sf.Name); dup {
				return nil, at(field+".name", "stage %q listed twice", sf.Name)
			}
			p.Stages = append(p.Stages, Stage{Name: sf.Name, Timeout: 5 * time.Minute})
			st = &p.Stages[len(p.Stages)-1]
		}
		if sf.Markers != nil {
			st.Markers = compile(field+".markers", sf.Markers)
		}
		if sf.Prompt != nil {
			st.Prompt = compile(field+".prompt", sf.Prompt)
		}
		if sf.Optional != nil {
			st.Optional = *sf.Optional
		}
		dur(field+".timeout", sf.Timeout, &st.Timeout)
		if sf.FailOn != nil {
			st.FailOn = failList(field+".fail-on", sf.FailOn)
		}
		if len(st.Markers) == 0 && len(st.Prompt) == 0 && err == nil {
			err = at(field, "stage %q has no markers", sf.Name)
		}
	}
	if err != nil {
		return nil, err
	}
	if last := p.Stages[len(p.Stages)-1]; last.Optional {
		path := "stages"
		for i, sf := range f.Stages {
			if sf.Name == last.Name {
				path = fmt.Sprintf("stages[%d].optional", i)
			}
		}
		return nil, at(path, "the last stage (%s) cannot be optional: it is the verdict", last.Name)
	}
	return p, nil
}
