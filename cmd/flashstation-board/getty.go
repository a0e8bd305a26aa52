//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flashstation/flashstation/serialvault"
)

// snapState is what the board's snapd knows of its registration, as the
// console's `snap changes` and `snap model --serial --assertion` show it.
type snapState struct {
	mu     sync.Mutex
	serial *serialvault.Serial
	err    error
	done   bool // "Initialize device" ended (serial or err)
}

func (s *snapState) finish(serial *serialvault.Serial, err error) {
	s.mu.Lock()
	s.serial, s.err, s.done = serial, err, true
	s.mu.Unlock()
}

func (s *snapState) get() (serial *serialvault.Serial, done bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serial, s.done, s.err
}

// getty is the console's login and shell for the factory user, as on an
// Ubuntu Core console line (and as sim's simulated boards answer): it
// echoes what is typed (not the password), prompts with "ubuntu login: ",
// and its shell knows the commands the station sends (echo, snap changes,
// snap model --serial --assertion, snap known serial, exit, logout).
// Lines end with "\r\n": the terminal does no output processing.
type getty struct {
	in             io.Reader
	out            io.Writer
	user, password string
	kernel         string // uname -r, for the welcome line
	snap           *snapState
}

// banner is the console-ready text a console line shows: the ready marker,
// then the login prompt.
func banner(ip string) string {
	return "\r\nUbuntu Core 22 on " + ip + " (ttyAMA0)\r\n\r\nubuntu login: "
}

// serve answers the console until reading it fails.
func (g *getty) serve() error {
	r := bufio.NewReader(g.in)
	echo := func(s string) { io.WriteString(g.out, s) }
	prompt := g.user + "@ubuntu:~$ "
	var line []byte
	loggedIn, wantPassword := false, false
	user := ""
	for {
		c, err := r.ReadByte()
		if err != nil {
			return fmt.Errorf("console: %w", err)
		}
		if c != '\r' && c != '\n' {
			line = append(line, c)
			if !wantPassword {
				echo(string(c))
			}
			continue
		}
		text := string(line)
		line = line[:0]
		switch {
		case !loggedIn && !wantPassword:
			if text == "" {
				echo("\r\nubuntu login: ")
				continue
			}
			user, wantPassword = text, true
			echo("\r\nPassword: ")
		case wantPassword:
			wantPassword = false
			echo("\r\n")
			if user == g.user && text == g.password {
				loggedIn = true
				echo("Welcome to Ubuntu Core 22 (GNU/Linux " + g.kernel + " armv7l)\r\n\r\n * Documentation:  https://ubuntu.com/core/docs\r\n\r\n" + prompt)
			} else {
				time.Sleep(50 * time.Millisecond) // pam's delay, shortened
				echo("Login incorrect\r\nubuntu login: ")
			}
		default:
			echo("\r\n")
			if g.shell(text, echo) {
				loggedIn = false
				echo("\r\nubuntu login: ")
				continue
			}
			echo(prompt)
		}
	}
}

// shell runs one command line; it returns true on exit.
func (g *getty) shell(cmdline string, out func(string)) bool {
	for _, cmd := range strings.Split(cmdline, ";") {
		cmd = strings.TrimSpace(cmd)
		switch {
		case cmd == "":
		case cmd == "exit" || cmd == "logout":
			out("logout\r\n")
			return true
		case strings.HasPrefix(cmd, "echo "):
			out(strings.Trim(strings.TrimPrefix(cmd, "echo "), "'\"") + "\r\n")
		case cmd == "snap changes":
			serial, done, err := g.snap.get()
			status, ready := "Doing", "-                 "
			switch {
			case done && serial != nil:
				status, ready = "Done ", "today at 10:11 UTC"
			case done && err != nil:
				status, ready = "Error", "today at 10:11 UTC"
			}
			out("ID   Status  Spawn               Ready               Summary\r\n")
			out("1    Done    today at 10:06 UTC  today at 10:09 UTC  Initialize system state\r\n")
			out(fmt.Sprintf("2    %s   today at 10:09 UTC  %s  Initialize device\r\n", status, ready))
		case cmd == "snap model --serial --assertion" || cmd == "snap known serial":
			serial, _, _ := g.snap.get()
			if serial == nil {
				out("error: device not registered yet\r\n")
				continue
			}
			out(strings.ReplaceAll(strings.TrimSuffix(string(serial.Encode()), "\n"), "\n", "\r\n") + "\r\n")
		default:
			out(fmt.Sprintf("%s: command not found\r\n", strings.Fields(cmd)[0]))
		}
	}
	return false
}

// rawTerminal turns off the terminal's line editing, echo, signals and
// output processing on fd: the getty echoes and ends lines itself.
func rawTerminal(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	t.Iflag &^= unix.ICRNL | unix.INLCR | unix.IGNCR | unix.IXON | unix.ISTRIP | unix.BRKINT
	t.Lflag &^= unix.ICANON | unix.ECHO | unix.ECHONL | unix.ISIG | unix.IEXTEN
	t.Oflag &^= unix.OPOST
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
