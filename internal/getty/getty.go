// Package getty acts out the console of an Ubuntu Core console line for
// the simulated boards (sim's boards and the QEMU boards' init): the
// factory user's login and a shell that knows the commands the station's
// console capture sends (echo, snap changes, snap model --serial
// --assertion, snap known serial, exit, logout).
//
// It echoes what is typed (never the password), and ends its lines with
// "\r\n" itself: the terminal does no output processing by then.
package getty

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// Prompt is the login prompt.
const Prompt = "ubuntu login: "

// Banner is the console-ready text a console line shows on tty: the ready
// marker, then the login prompt.
func Banner(ip, tty string) string {
	return "\r\nUbuntu Core 22 on " + ip + " (" + tty + ")\r\n\r\n" + Prompt
}

// Registration is what the board's snapd knows of its registration: the
// serial assertion once registered, the error once it failed, neither
// while it is being done.
type Registration func() (assertion []byte, err error)

// Getty is one console's login and shell. Feed it the bytes typed, one at
// a time, or let Serve read them; it is not safe for concurrent use.
type Getty struct {
	User, Password string
	Kernel         string // uname -r, for the welcome line
	Snap           Registration
	Out            func(string) // writes to the console

	line         []byte
	user         string
	loggedIn     bool
	wantPassword bool
}

// Reset starts over, as a fresh getty after a reboot: nobody logged in.
func (g *Getty) Reset() {
	g.line, g.user, g.loggedIn, g.wantPassword = g.line[:0], "", false, false
}

// Serve feeds the getty what r reads until reading fails.
func (g *Getty) Serve(r io.Reader) error {
	br := bufio.NewReader(r)
	for {
		c, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("console: %w", err)
		}
		g.Feed(c)
	}
}

// Feed takes one byte typed on the console.
func (g *Getty) Feed(c byte) {
	if c != '\r' && c != '\n' {
		g.line = append(g.line, c)
		if !g.wantPassword {
			g.Out(string(c))
		}
		return
	}
	text := string(g.line)
	g.line = g.line[:0]
	prompt := g.User + "@ubuntu:~$ "
	switch {
	case !g.loggedIn && !g.wantPassword:
		if text == "" {
			g.Out("\r\n" + Prompt)
			return
		}
		g.user, g.wantPassword = text, true
		g.Out("\r\nPassword: ")
	case g.wantPassword:
		g.wantPassword = false
		g.Out("\r\n")
		if g.user == g.User && text == g.Password {
			g.loggedIn = true
			g.Out("Welcome to Ubuntu Core 22 (GNU/Linux " + g.Kernel + " armv7l)\r\n\r\n * Documentation:  https://ubuntu.com/core/docs\r\n\r\n" + prompt)
			return
		}
		time.Sleep(50 * time.Millisecond) // pam's delay, shortened
		g.Out("Login incorrect\r\n" + Prompt)
	default:
		g.Out("\r\n")
		if g.shell(text) {
			g.loggedIn = false
			g.Out("\r\n" + Prompt)
			return
		}
		g.Out(prompt)
	}
}

// shell runs one command line; it returns true on exit.
func (g *Getty) shell(cmdline string) bool {
	for _, cmd := range strings.Split(cmdline, ";") {
		cmd = strings.TrimSpace(cmd)
		switch {
		case cmd == "":
		case cmd == "exit" || cmd == "logout":
			g.Out("logout\r\n")
			return true
		case strings.HasPrefix(cmd, "echo "):
			g.Out(strings.Trim(strings.TrimPrefix(cmd, "echo "), "'\"") + "\r\n")
		case cmd == "snap changes":
			assertion, err := g.Snap()
			status, ready := "Doing", "-                 "
			switch {
			case assertion != nil:
				status, ready = "Done ", "today at 10:11 UTC"
			case err != nil:
				status, ready = "Error", "today at 10:11 UTC"
			}
			g.Out("ID   Status  Spawn               Ready               Summary\r\n")
			g.Out("1    Done    today at 10:06 UTC  today at 10:09 UTC  Initialize system state\r\n")
			g.Out(fmt.Sprintf("2    %s   today at 10:09 UTC  %s  Initialize device\r\n", status, ready))
		case cmd == "snap model --serial --assertion" || cmd == "snap known serial":
			assertion, _ := g.Snap()
			if assertion == nil {
				g.Out("error: device not registered yet\r\n")
				continue
			}
			g.Out(strings.ReplaceAll(strings.TrimSuffix(string(assertion), "\n"), "\n", "\r\n") + "\r\n")
		default:
			g.Out(fmt.Sprintf("%s: command not found\r\n", strings.Fields(cmd)[0]))
		}
	}
	return false
}
