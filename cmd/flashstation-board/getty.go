//go:build linux

package main

import (
	"fmt"
	"sync"

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

// registration is the state as the console's getty shows it.
func (s *snapState) registration() ([]byte, error) {
	serial, _, err := s.get()
	if serial != nil {
		return serial.Encode(), nil
	}
	return nil, err
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
