package armimage

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the proxy's forwarder QEMU starts.
func TestMain(m *testing.M) {
	ForwardMain()
	os.Exit(m.Run())
}

// TestForwardRelaysOneConnection relays an HTTP exchange whose client
// half-closes after its request, as the guest's connections go through
// the forwarder.
func TestForwardRelaysOneConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got "+string(b))
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { srv.Close(); <-served }()

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- forward(inR, outW, l.Addr().String()) }()
	go func() {
		io.WriteString(inW, "POST /x HTTP/1.1\r\nHost: 10.0.2.100\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
		inW.Close()
	}()
	resp, err := http.ReadResponse(bufio.NewReader(outR), nil)
	must(t, err)
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	if string(body) != "got hello" {
		t.Errorf("body %q", body)
	}
	if err := <-done; err != nil {
		t.Errorf("forward: %v", err)
	}
}

func TestForwardCmdQuotes(t *testing.T) {
	got := forwardCmd("/tmp/a,b/it's", "127.0.0.1:80")
	want := `'/tmp/a,,b/it'\''s' ` + ForwardArg + ` '127.0.0.1:80'`
	if got != want {
		t.Errorf("forwardCmd = %s, want %s", got, want)
	}
	if strings.Count(got, ",,") != 1 {
		t.Error("comma not doubled")
	}
}
