package console_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/secret"
	"github.com/flashstation/flashstation/serialvault"
)

// shell is a scripted getty and shell on the board side of a pty: it
// echoes what it is sent (like a tty), asks for a login and a password,
// and answers `echo`, `snap changes` and `snap model --serial
// --assertion` like Ubuntu Core, interleaving kernel messages.
type shell struct {
	b          *board
	password   string
	pendingFor int // snap changes answers "Doing" this many times
	assertion  string
	changes    atomic.Int32
	gotPass    atomic.Value
}

func (s *shell) run() {
	w := s.b.master
	r := bufio.NewReader(s.b.master)
	write := func(f string, a ...any) { fmt.Fprintf(w, f, a...) }
	readLine := func(echo bool) (string, bool) {
		l, err := r.ReadString('\n')
		if err != nil {
			return "", false
		}
		l = strings.TrimRight(l, "\r\n")
		if echo {
			write("%s\r\n", l)
		} else {
			write("\r\n")
		}
		return l, true
	}
	for {
		write("\r\nubuntu login: ")
		user, ok := readLine(true)
		if !ok {
			return
		}
		if user == "" {
			continue // agetty asks again
		}
		write("Password: ")
		pass, ok := readLine(false)
		if !ok {
			return
		}
		s.gotPass.Store(pass)
		if user != "factory" || pass != s.password {
			write("\r\nLogin incorrect")
			continue
		}
		write("Welcome to Ubuntu Core 20 (GNU/Linux 5.4.0-1028-raspi armv7l)\r\n\r\n")
	session:
		for {
			write("factory@ubuntu:~$ ")
			cmd, ok := readLine(true)
			if !ok {
				return
			}
			for _, part := range strings.Split(cmd, ";") {
				part = strings.TrimSpace(part)
				switch {
				case strings.HasPrefix(part, "echo "):
					write("%s\r\n", strings.TrimPrefix(part, "echo "))
				case part == "snap changes":
					n := s.changes.Add(1)
					status := "Done "
					if int(n) <= s.pendingFor {
						status = "Doing"
					}
					write("ID   Status  Spawn               Ready               Summary\r\n")
					write("1    Done    today at 10:06 UTC  today at 10:09 UTC  Initialize system state\r\n")
					write("2    %s   today at 10:09 UTC  -                   Initialize device\r\n", status)
				case part == "snap model --serial --assertion":
					for i, l := range strings.Split(strings.TrimSuffix(s.assertion, "\n"), "\n") {
						write("%s\r\n", l)
						if i == 3 {
							write("[  123.456789] usb 1-1.3: new high-speed USB device number 4\r\n")
						}
					}
				case part == "exit":
					write("logout\r\n")
					break session
				}
			}
		}
	}
}

func TestCaptureSerialOverConsole(t *testing.T) {
	vec, err := os.ReadFile("../serialvault/testdata/vectors/04-serial-response.txt")
	if err != nil {
		t.Fatal(err)
	}
	b := newBoard(t, "")
	trPath := filepath.Join(t.TempDir(), "console.raw")
	tr, _ := console.CreateTranscript(trPath)
	c := openConsole(t, b.link, tr)
	sh := &shell{b: b, password: "s3cret-factory-pw", pendingFor: 2, assertion: string(vec)}
	go sh.run()
	// The boot ends at the login prompt.
	if _, _, err := c.Expect(context.Background(), regexp.MustCompile(`login: $`), true, ceiling, nil); err != nil {
		t.Fatal(err)
	}
	text, err := console.CaptureSerial(context.Background(), c, console.LoginOptions{
		User: "factory", Password: secret.New("s3cret-factory-pw"), Poll: 10 * time.Millisecond, Step: ceiling,
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(text) != string(vec) {
		t.Fatalf("captured\n%s\nwant\n%s", text, vec)
	}
	// Hand it to serialvault: it decodes and verifies with the brand key.
	ring := serialvault.NewKeyRing()
	ring.AddFile("../serialvault/testdata/vectors/acme-brand-key.pub")
	a, err := serialvault.Decode(text)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Verify(a); err != nil {
		t.Errorf("captured assertion does not verify: %v", err)
	}
	if sh.changes.Load() != 3 {
		t.Errorf("snap changes asked %d times, want 3 (twice Doing)", sh.changes.Load())
	}
	c.Close()
	tr.Close()
	raw, _ := os.ReadFile(trPath)
	if strings.Contains(string(raw), "s3cret-factory-pw") {
		t.Error("the password is in the transcript")
	}
	if !strings.Contains(string(raw), `> "[redacted]\n"`) {
		t.Errorf("transcript does not show the redacted password:\n%s", raw)
	}
}

// TestToLoginPrompt: a console the station finds in an unknown state
// after a restart, at a login prompt or with a shell left logged in, is
// brought to a login prompt, and the serial is then captured.
func TestToLoginPrompt(t *testing.T) {
	vec, err := os.ReadFile("../serialvault/testdata/vectors/04-serial-response.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, loggedIn := range []bool{false, true} {
		t.Run(fmt.Sprintf("logged-in=%v", loggedIn), func(t *testing.T) {
			b := newBoard(t, "")
			c := openConsole(t, b.link, nil)
			sh := &shell{b: b, password: "pw", assertion: string(vec)}
			go sh.run()
			if _, _, err := c.Expect(context.Background(), regexp.MustCompile(`login: $`), true, ceiling, nil); err != nil {
				t.Fatal(err)
			}
			if loggedIn { // the stopped station's session
				c.Send("factory\n")
				c.Expect(context.Background(), regexp.MustCompile(`Password: $`), true, ceiling, nil)
				c.Send("pw\n")
				if _, _, err := c.Expect(context.Background(), regexp.MustCompile(`\$ $`), true, ceiling, nil); err != nil {
					t.Fatal(err)
				}
			}
			// The restarted station opens the console afresh: it has seen
			// no prompt.
			c.Close()
			c = openConsole(t, b.link, nil)
			if err := console.ToLoginPrompt(context.Background(), c, ceiling, nil); err != nil {
				t.Fatal(err)
			}
			text, err := console.CaptureSerial(context.Background(), c, console.LoginOptions{User: "factory", Password: secret.New("pw"), Poll: time.Millisecond, Step: ceiling})
			if err != nil || string(text) != string(vec) {
				t.Fatalf("capture after ToLoginPrompt: %v\n%s", err, text)
			}
		})
	}
}

func TestCaptureSerialFailures(t *testing.T) {
	vec, _ := os.ReadFile("../serialvault/testdata/vectors/04-serial-response.txt")
	start := func(t *testing.T, sh *shell) *console.Console {
		b := newBoard(t, "")
		c := openConsole(t, b.link, nil)
		sh.b = b
		go sh.run()
		if _, _, err := c.Expect(context.Background(), regexp.MustCompile(`login: $`), true, ceiling, nil); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Step only bounds each exchange (a hang fails). Wait is the
	// registration wait under test: the board answers "Doing" to the first
	// thousand polls, ten seconds of polls at the least, so the wait ends
	// first however loaded the machine.
	opts := console.LoginOptions{User: "factory", Password: secret.New("right"), Poll: 10 * time.Millisecond, Step: ceiling, Wait: 300 * time.Millisecond}

	c := start(t, &shell{password: "other", assertion: string(vec)})
	_, err := console.CaptureSerial(context.Background(), c, opts)
	if r, _ := console.IsCaptureError(err); r != console.ReasonLoginFailed {
		t.Errorf("wrong password: %v", err)
	}

	c = start(t, &shell{password: "right", pendingFor: 1000, assertion: string(vec)})
	_, err = console.CaptureSerial(context.Background(), c, opts)
	if r, _ := console.IsCaptureError(err); r != console.ReasonRegistrationWait {
		t.Errorf("never registered: %v", err)
	}

	c = start(t, &shell{password: "right", assertion: "error: device not registered yet\n"})
	_, err = console.CaptureSerial(context.Background(), c, opts)
	if r, _ := console.IsCaptureError(err); r != console.ReasonNoSerial {
		t.Errorf("no assertion: %v", err)
	}

	_, err = console.CaptureSerial(context.Background(), c, console.LoginOptions{User: "factory", ReadyByConsoleConf: true})
	if r, _ := console.IsCaptureError(err); r != console.ReasonConsoleConf {
		t.Errorf("console-conf: %v", err)
	}
}

func TestIsMarker(t *testing.T) {
	for _, tt := range []struct {
		line string
		want bool
	}{
		{"FSOK-0123456789ab\r", true},
		{"FSEND-a97083f7b600", true},
		{"$ echo FSEND-a97083f7b600", false},
		{"FSEND-a97083f7b60", false},
		{"serial: FSEND-a97083f7b600", false},
		{"Ubuntu Core 22 on 10.42.0.36 (ttyS0)", false},
	} {
		if got := console.IsMarker(tt.line); got != tt.want {
			t.Errorf("IsMarker(%q) = %v, want %v", tt.line, got, tt.want)
		}
	}
}
