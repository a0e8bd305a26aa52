package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/flashstation/flashstation/secret"
)

// Reason codes of a failed console capture.
const (
	ReasonConsoleConf      = "console-conf"         // no user: console-conf owns the console
	ReasonLoginFailed      = "login-failed"         // user or password refused
	ReasonNoShell          = "no-shell"             // no shell answered after the login
	ReasonRegistrationWait = "registration-timeout" // snapd did not finish "Initialize device"
	ReasonRegistration     = "registration-failed"  // snapd gave up "Initialize device"
	ReasonNoSerial         = "no-serial-assertion"  // the board printed no serial assertion
)

// CaptureError is why a console capture failed.
type CaptureError struct {
	Reason string
	Detail string
	Lines  []string // the console lines around the failure
}

func (e *CaptureError) Error() string { return e.Reason + ": " + e.Detail }

// LoginOptions configure a console capture of the serial assertion.
type LoginOptions struct {
	User     string
	Password secret.Value
	// ReadyByConsoleConf is set when the boot reached "Press enter to
	// configure.": there is no user to log in as.
	ReadyByConsoleConf bool
	// Wait bounds the wait for "Initialize device" (default 10 min); Poll
	// is the pause between `snap changes` (default 10 s); Step bounds each
	// exchange (default 60 s).
	Wait, Poll, Step time.Duration
	OnLine           func(string)
}

var (
	kernelLine     = regexp.MustCompile(`^\[\s*\d+\.\d+\]`)
	initDone       = regexp.MustCompile(`^\d+\s+Done\s+.*\bInitialize device\s*$`)
	initFailed     = regexp.MustCompile(`^\d+\s+(Error|Undone|Hold)\s+.*\bInitialize device\s*$`)
	passwordPrompt = regexp.MustCompile(`(?i)password: ?$`)
)

var markerLine = regexp.MustCompile(`^FS[A-Z]+-[0-9a-f]{12}$`)

// IsMarker reports whether a console line is one of the markers the
// station echoes to frame a shell exchange (not worth showing an operator).
func IsMarker(line string) bool { return markerLine.MatchString(strings.TrimSpace(line)) }

func marker(kind string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "FS" + kind + "-" + hex.EncodeToString(b)
}

// CaptureSerial logs in on the console (user, then password at its
// prompt), confirms a shell with an echoed random marker, waits until
// `snap changes` shows "Initialize device" done, prints the serial
// assertion with `snap model --serial --assertion` between markers and
// returns its text: echoed commands, CRLF and kernel lines interleaved in
// the output are dropped. The password is written only after the board
// asks for it and never reaches a transcript or a log.
func CaptureSerial(ctx context.Context, c *Console, o LoginOptions) ([]byte, error) {
	if o.ReadyByConsoleConf {
		return nil, &CaptureError{Reason: ReasonConsoleConf,
			Detail: "the console shows console-conf (Press enter to configure): the image has no factory user; create one (system-user assertion) or capture through the proxy"}
	}
	if o.User == "" {
		return nil, &CaptureError{Reason: ReasonLoginFailed, Detail: "no console user configured"}
	}
	if o.Wait == 0 {
		o.Wait = 10 * time.Minute
	}
	if o.Poll == 0 {
		o.Poll = 10 * time.Second
	}
	if o.Step == 0 {
		o.Step = 60 * time.Second
	}
	fail := func(reason, detail string, lines []string) error {
		return &CaptureError{Reason: reason, Detail: detail, Lines: lines}
	}
	if err := c.Send(o.User + "\n"); err != nil {
		return nil, err
	}
	if _, seen, err := c.Expect(ctx, passwordPrompt, true, o.Step, o.OnLine); err != nil {
		return nil, fail(ReasonLoginFailed, "no password prompt after the user name: "+err.Error(), seen)
	}
	if err := c.SendSecret(o.Password.Reveal(), "\n"); err != nil {
		return nil, err
	}
	shell := marker("SHELL")
	if err := c.Send("echo " + shell + "\n"); err != nil {
		return nil, err
	}
	got, seen, err := c.Expect(ctx, regexp.MustCompile(`^`+shell+`$|Login incorrect|Authentication failure`), false, o.Step, o.OnLine)
	switch {
	case err != nil:
		return nil, fail(ReasonNoShell, "no shell answered after the login: "+err.Error(), seen)
	case got != shell:
		return nil, fail(ReasonLoginFailed, fmt.Sprintf("the board refused the login of %q (%s)", o.User, got), seen)
	}

	deadline := time.Now().Add(o.Wait)
	for {
		end := marker("END")
		if err := c.Send("snap changes; echo " + end + "\n"); err != nil {
			return nil, err
		}
		_, out, err := c.Expect(ctx, regexp.MustCompile(`^`+end+`$`), false, o.Step, o.OnLine)
		if err != nil {
			return nil, fail(ReasonNoShell, "snap changes did not finish: "+err.Error(), out)
		}
		done, failed := false, ""
		for _, l := range out {
			l = strings.TrimSpace(l)
			if initDone.MatchString(l) {
				done = true
			}
			if initFailed.MatchString(l) {
				failed = l
			}
		}
		if failed != "" {
			return nil, fail(ReasonRegistration, "snapd gave up registering: "+failed, out)
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			return nil, fail(ReasonRegistrationWait, fmt.Sprintf("\"Initialize device\" not done within %s (device key generation or the vault)", o.Wait), out)
		}
		t := time.NewTimer(o.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}

	begin, end := marker("BEGIN"), marker("END")
	if err := c.Send("echo " + begin + "; snap model --serial --assertion; echo " + end + "\n"); err != nil {
		return nil, err
	}
	if _, seen, err := c.Expect(ctx, regexp.MustCompile(`^`+begin+`$`), false, o.Step, o.OnLine); err != nil {
		return nil, fail(ReasonNoSerial, "the assertion was not printed: "+err.Error(), seen)
	}
	_, out, err := c.Expect(ctx, regexp.MustCompile(`^`+end+`$`), false, o.Step, o.OnLine)
	if err != nil {
		return nil, fail(ReasonNoSerial, "the assertion output did not end: "+err.Error(), out)
	}
	var text []string
	for _, l := range out {
		if kernelLine.MatchString(l) {
			continue // the kernel writes to the console whenever it likes
		}
		text = append(text, l)
	}
	for len(text) > 0 && text[0] == "" {
		text = text[1:]
	}
	for len(text) > 0 && text[len(text)-1] == "" {
		text = text[:len(text)-1]
	}
	_ = c.Send("exit\n")
	if len(text) == 0 || !strings.HasPrefix(text[0], "type: serial") {
		return nil, fail(ReasonNoSerial, "the board printed no serial assertion", out)
	}
	return []byte(strings.Join(text, "\n") + "\n"), nil
}

var (
	loginPrompt = regexp.MustCompile(`login: ?$`)
	anyPrompt   = regexp.MustCompile(`login: ?$|[$#] ?$`)
)

// ToLoginPrompt brings a console whose state the station does not know (it
// restarted while a board was in work) to a login prompt, so that
// CaptureSerial can log in: a newline shows the prompt (a half-done login
// fails harmlessly and shows it too), and a shell a stopped station left
// open is logged out.
func ToLoginPrompt(ctx context.Context, c *Console, step time.Duration, onLine func(string)) error {
	if step == 0 {
		step = 60 * time.Second
	}
	if err := c.Send("\n"); err != nil {
		return err
	}
	got, seen, err := c.Expect(ctx, anyPrompt, true, step, onLine)
	if err != nil {
		return &CaptureError{Reason: ReasonNoShell, Detail: "no login or shell prompt: " + err.Error(), Lines: seen}
	}
	if loginPrompt.MatchString(got) {
		return nil
	}
	if err := c.Send("exit\n"); err != nil {
		return err
	}
	if _, seen, err := c.Expect(ctx, loginPrompt, true, step, onLine); err != nil {
		return &CaptureError{Reason: ReasonNoShell, Detail: "the shell left open did not log out: " + err.Error(), Lines: seen}
	}
	return nil
}

// IsCaptureError reports a capture failure's reason.
func IsCaptureError(err error) (string, bool) {
	var ce *CaptureError
	if errors.As(err, &ce) {
		return ce.Reason, true
	}
	return "", false
}
