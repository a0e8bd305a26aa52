package getty

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

// syncBuffer is the console's output as the test reads it; changed is
// closed and replaced on every write.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
	return s.b.Write(p)
}

// waitSuffix waits until the output written after its first from bytes
// ends with want (the output before may end with it too: a prompt).
func (s *syncBuffer) waitSuffix(from int, want string, timeout *time.Timer) bool {
	for {
		s.mu.Lock()
		ok, changed := strings.HasSuffix(s.b.String()[from:], want), s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-timeout.C:
			return false
		}
	}
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestGettyActsOutTheFactoryLogin types what the station's console
// capture types and checks the answers, before and after registration.
func TestGettyActsOutTheFactoryLogin(t *testing.T) {
	brand := vaulttest.TestKey(0)
	dev := vaulttest.TestKey(1)
	a, err := serialvault.Sign(map[string]any{
		"type": "serial", "authority-id": "acme", "brand-id": "acme", "model": "qemu-armhf", "serial": "QA-1",
		"device-key": dev.Public().Encode(), "device-key-sha3-384": dev.Public().ID(), "timestamp": "2026-01-01T00:00:00Z",
	}, nil, brand, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	serial, err := serialvault.AsSerial(a)
	if err != nil {
		t.Fatal(err)
	}
	in, typing := io.Pipe()
	out := syncBuffer{changed: make(chan struct{})}
	var mu sync.Mutex
	var registered []byte
	g := &Getty{User: "factory", Password: "pw", Kernel: "6.1.0-57-armmp", Out: func(s string) { io.WriteString(&out, s) },
		Snap: func() ([]byte, error) {
			mu.Lock()
			defer mu.Unlock()
			return registered, nil
		}}
	served := make(chan error, 1)
	go func() { served <- g.Serve(in) }()
	defer func() {
		typing.Close()
		<-served
	}()
	// exchange types text and waits until the output ends with want.
	exchange := func(text, want string) string {
		t.Helper()
		from := len(out.String())
		if _, err := io.WriteString(typing, text); err != nil {
			t.Fatal(err)
		}
		timeout := time.NewTimer(time.Minute) // a bound on a hang, not a wait
		defer timeout.Stop()
		if !out.waitSuffix(from, want, timeout) {
			t.Fatalf("after %q: %q, want it to end with %q", text, out.String()[from:], want)
		}
		return out.String()[from:]
	}
	exchange("\n", "\r\nubuntu login: ")
	exchange("factory\n", "factory\r\nPassword: ")
	exchange("wrong\n", "\r\nLogin incorrect\r\nubuntu login: ")
	exchange("factory\n", "Password: ")
	if got := exchange("pw\n", "factory@ubuntu:~$ "); strings.Contains(got, "pw") || !strings.Contains(got, "GNU/Linux 6.1.0-57-armmp armv7l") {
		t.Errorf("login answer %q", got)
	}
	if got := exchange("snap changes; echo FSEND-1\n", "FSEND-1\r\nfactory@ubuntu:~$ "); !strings.Contains(got, "Doing   today at 10:09 UTC  -                   Initialize device\r\n") {
		t.Errorf("snap changes before the registration: %q", got)
	}
	if got := exchange("snap model --serial --assertion\n", "factory@ubuntu:~$ "); got != "snap model --serial --assertion\r\nerror: device not registered yet\r\nfactory@ubuntu:~$ " {
		t.Errorf("the assertion before the registration: %q", got)
	}
	mu.Lock()
	registered = serial.Encode()
	mu.Unlock()
	if got := exchange("snap changes\n", "factory@ubuntu:~$ "); !strings.Contains(got, "2    Done    today at 10:09 UTC  today at 10:11 UTC  Initialize device\r\n") {
		t.Errorf("snap changes after the registration: %q", got)
	}
	got := exchange("snap known serial\n", "factory@ubuntu:~$ ")
	want := "snap known serial\r\n" + strings.ReplaceAll(strings.TrimSuffix(string(a.Encode()), "\n"), "\n", "\r\n") + "\r\nfactory@ubuntu:~$ "
	if got != want {
		t.Errorf("the assertion:\n%q\nwant\n%q", got, want)
	}
	exchange("frob\n", "frob: command not found\r\nfactory@ubuntu:~$ ")
	exchange("exit\n", "exit\r\nlogout\r\n\r\nubuntu login: ")
}

// TestGettyFailedRegistrationAndReset: a failed registration shows as an
// Error change; after Reset (a reboot) a logged-in user is logged out and
// the shell no longer answers.
func TestGettyFailedRegistrationAndReset(t *testing.T) {
	var out strings.Builder
	g := &Getty{User: "factory", Password: "pw", Kernel: "k", Out: func(s string) { out.WriteString(s) },
		Snap: func() ([]byte, error) { return nil, io.ErrUnexpectedEOF }}
	typeText := func(s string) string {
		out.Reset()
		for i := range len(s) {
			g.Feed(s[i])
		}
		return out.String()
	}
	typeText("factory\npw\n")
	if got := typeText("snap changes\n"); !strings.Contains(got, "2    Error   today at 10:09 UTC  today at 10:11 UTC  Initialize device\r\n") {
		t.Errorf("snap changes after a failed registration: %q", got)
	}
	if got := typeText("snap known serial\n"); !strings.Contains(got, "error: device not registered yet") {
		t.Errorf("the assertion after a failed registration: %q", got)
	}
	typeText("ech")
	g.Reset()
	if got := typeText("echo hi\n"); got != "echo hi\r\nPassword: " {
		t.Errorf("after Reset, the typed line is a user name: %q", got)
	}
}
