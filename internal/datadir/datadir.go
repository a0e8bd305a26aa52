// Package datadir keeps one station per data directory: a station holds
// an exclusive lock on DATA/station.lock for as long as it runs, and a
// second station on the same directory is refused with who holds it.
//
// The lock is a flock(2) on the open file, taken without waiting. The
// kernel drops it when the holder's file is closed, which includes the
// process ending in any way (a crash, SIGKILL, a power cut): a lock file
// left behind by a dead station never blocks the next one. The flock is
// the truth; the file's content (the holder's pid, host name and start
// time, written once the lock is taken) is only what the refusal says.
// The file is never removed: removing a locked file would let a second
// station lock a new file of the same name while the first still runs.
//
// flock locks belong to the open file description, so two Acquire calls
// on one directory conflict even inside one process. The file is opened
// close-on-exec: programs a station starts do not inherit its lock.
package datadir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FileName is the lock file's name inside the data directory.
const FileName = "station.lock"

// maxHolder bounds how much of a lock file is read for its holder.
const maxHolder = 4 << 10

// Holder is what a lock file says about the station holding it.
type Holder struct {
	PID   int
	Host  string
	Since time.Time
}

// InUseError says a data directory is locked by another station. Holder
// is what its lock file says; Known is false when it says nothing usable
// (the holder has just taken the lock and not written it yet).
type InUseError struct {
	Dir    string
	Holder Holder
	Known  bool
}

func (e *InUseError) Error() string {
	if !e.Known {
		return fmt.Sprintf("data directory %s in use by another station (%s names no holder yet)", e.Dir, filepath.Join(e.Dir, FileName))
	}
	return fmt.Sprintf("data directory %s in use by pid %d on %s since %s", e.Dir, e.Holder.PID, e.Holder.Host,
		e.Holder.Since.Format(time.RFC3339))
}

// Lock is a held data directory lock. Keep it reachable for as long as
// the station runs: closing it (or the garbage collector closing its
// file) releases the directory.
type Lock struct {
	dir string
	f   *os.File
}

// Acquire locks dir (creating it if needed) for this station, or returns
// an *InUseError when another station holds it. It never waits.
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			e := &InUseError{Dir: dir}
			e.Holder, e.Known = readHolder(f)
			return nil, e
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	h := Holder{PID: os.Getpid(), Host: host, Since: time.Now().Truncate(time.Second)}
	if err := write(f, h.format()); err != nil {
		f.Close() // releases the lock
		return nil, fmt.Errorf("write lock file %s: %w", path, err)
	}
	return &Lock{dir: dir, f: f}, nil
}

// Dir returns the locked directory, as given to Acquire.
func (l *Lock) Dir() string { return l.dir }

// Close empties the lock file and releases the directory. It may be
// called more than once.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	terr := f.Truncate(0) // a holder no longer
	return errors.Join(terr, f.Close())
}

// flock calls flock(2), again when a signal interrupts it.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if ferr = syscall.Flock(int(fd), how); !errors.Is(ferr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}

// write puts content at the start of the file in one write, then cuts
// what a longer earlier content left after it: a reader sees the new
// holder first at every moment but the very first write.
func write(f *os.File, content []byte) error {
	if _, err := f.WriteAt(content, 0); err != nil {
		return err
	}
	if err := f.Truncate(int64(len(content))); err != nil {
		return err
	}
	return f.Sync()
}

// format is the lock file's content: one "key value" line per field.
func (h Holder) format() []byte {
	return fmt.Appendf(nil, "pid %d\nhost %s\nsince %s\n", h.PID, h.Host, h.Since.Format(time.RFC3339))
}

// readHolder reads the holder from a lock file.
func readHolder(f *os.File) (Holder, bool) {
	buf := make([]byte, maxHolder)
	n, err := f.ReadAt(buf, 0)
	if n == 0 && err != nil {
		return Holder{}, false
	}
	return parseHolder(buf[:n])
}

// parseHolder parses a lock file's content. The first line of each key
// counts; a holder needs all three, a pid above 0 and an RFC 3339 time.
func parseHolder(data []byte) (Holder, bool) {
	var h Holder
	var seen struct{ pid, host, since bool }
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 256), maxHolder)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch {
		case key == "pid" && !seen.pid:
			pid, err := strconv.Atoi(value)
			if err != nil || pid <= 0 {
				return Holder{}, false
			}
			h.PID, seen.pid = pid, true
		case key == "host" && !seen.host:
			if value == "" || strings.ContainsFunc(value, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				return Holder{}, false
			}
			h.Host, seen.host = value, true
		case key == "since" && !seen.since:
			t, err := time.Parse(time.RFC3339, value)
			if err != nil {
				return Holder{}, false
			}
			h.Since, seen.since = t, true
		}
	}
	if !seen.pid || !seen.host || !seen.since {
		return Holder{}, false
	}
	return h, true
}
