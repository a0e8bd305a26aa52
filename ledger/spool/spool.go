// Package spool keeps every serial assertion the station learns on disk,
// written and fsynced before anything else happens to it, until the ledger
// holds it. A full disk under the ledger, a read-only ledger, a stop or a
// kill between the vault's signature and the ledger write never lose a
// signed serial: the next start replays the spool into the ledger.
//
// One file per assertion (named by the SHA-256 of its text), written to a
// temporary name, fsynced, renamed and the directory fsynced: a file is
// there whole or not at all.
package spool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/flashstation/flashstation/ledger/record"
)

// Entry is one spooled serial assertion.
type Entry struct {
	Assertion record.SerialAssertion `json:"assertion"`
	// BodySHA256 and Answer are the recording proxy's: the board's serial
	// request and the vault's verified answer to it, so that the board's
	// retry of that request gets the answer again after a restart.
	BodySHA256 string `json:"body_sha256,omitempty"`
	Answer     []byte `json:"answer,omitempty"`
}

// Key names an entry: the SHA-256 of its assertion's text.
func (e Entry) Key() string {
	sum := sha256.Sum256(e.Assertion.Text)
	return hex.EncodeToString(sum[:])
}

// MaxEntry bounds an entry file (an assertion is a few KiB).
const MaxEntry = 4 << 20

// ReserveBytes is the space the spool keeps for itself on the data
// directory's disk: a file it gives up when the disk is full, so that the
// serials signed then still reach the disk.
const ReserveBytes = 4 << 20

const reserveName = ".reserve"

// Spool is a directory of spooled assertions. It is safe for concurrent use.
type Spool struct {
	dir string
	mu  sync.Mutex
}

// Open opens (creating) a spool directory, and its reserve when there is
// room for it.
func Open(dir string) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: dir}
	s.reserve()
	return s, nil
}

// reserve makes the reserve file if it is missing (best effort).
func (s *Spool) reserve() {
	name := filepath.Join(s.dir, reserveName)
	if fi, err := os.Stat(name); err == nil && fi.Size() >= ReserveBytes {
		return
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	// Real blocks, not a hole: written, so the space is the spool's.
	buf := make([]byte, 64<<10)
	for off := int64(0); off < ReserveBytes; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf, off); err != nil {
			f.Close()
			os.Remove(name)
			return
		}
	}
	if f.Sync() != nil {
		f.Close()
		os.Remove(name)
		return
	}
	f.Close()
}

// Count returns how many entries wait in a spool directory, without
// opening it as a spool (nothing is created or written: read-only
// commands use it).
func Count(dir string) (int, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	return len(names), err
}

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// Put writes an entry durably (fsynced, with its directory) and returns
// its key. Putting an entry already there replaces it.
func (s *Spool) Put(e Entry) (string, error) {
	if len(e.Assertion.Text) == 0 {
		return "", errors.New("spool: an entry without an assertion")
	}
	data, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	key := e.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	err = s.write(key, data)
	if errors.Is(err, syscall.ENOSPC) {
		// The disk is full: the reserve makes room for a signed serial.
		if os.Remove(filepath.Join(s.dir, reserveName)) == nil {
			err = s.write(key, data)
		}
	}
	if err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	return key, nil
}

func (s *Spool) write(key string, data []byte) error {
	tmp, err := os.CreateTemp(s.dir, key+".*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(s.dir, key+".json"))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// Done removes an entry the ledger holds now.
func (s *Spool) Done(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(filepath.Join(s.dir, key+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.reserve() // given up on a full disk: taken again once there is room
	return nil
}

// Pending returns the spooled entries, oldest first (by the time the
// station received them). An unreadable file is an error naming it; it is
// never removed.
func (s *Spool) Pending() ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names, err := filepath.Glob(filepath.Join(s.dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Entry
	var bad []string
	for _, name := range names {
		fi, err := os.Stat(name)
		if err != nil || fi.Size() > MaxEntry {
			bad = append(bad, filepath.Base(name))
			continue
		}
		data, err := os.ReadFile(name)
		var e Entry
		if err == nil {
			err = json.Unmarshal(data, &e)
		}
		if err != nil || len(e.Assertion.Text) == 0 || e.Key()+".json" != filepath.Base(name) {
			bad = append(bad, filepath.Base(name))
			continue
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Assertion.ReceivedAt.Before(out[j].Assertion.ReceivedAt) })
	if len(bad) > 0 {
		return out, fmt.Errorf("spool %s: unreadable entries kept for QA: %s", s.dir, strings.Join(bad, ", "))
	}
	return out, nil
}

// Recorder writes serial assertions durably; *ledger.Ledger is one.
type Recorder interface {
	RecordSerialAssertion(ctx context.Context, a record.SerialAssertion) (id int64, created bool, err error)
}

// Replay records every pending entry into rec and removes those recorded.
// It returns the entries recorded, and the first error (the entries not
// recorded stay spooled for the next replay).
func (s *Spool) Replay(ctx context.Context, rec Recorder) ([]Entry, error) {
	pending, perr := s.Pending()
	var done []Entry
	for _, e := range pending {
		if _, _, err := rec.RecordSerialAssertion(ctx, e.Assertion); err != nil {
			return done, fmt.Errorf("spool replay: %w", err)
		}
		if err := s.Done(e.Key()); err != nil {
			return done, err
		}
		done = append(done, e)
	}
	s.mu.Lock()
	s.reserve() // room again, maybe
	s.mu.Unlock()
	return done, perr
}

// Recording is a Recorder that spools each assertion before it records it
// into the ledger: a failing ledger write leaves it spooled (and returns
// the error, so the caller can say the serial is not in the ledger yet).
type Recording struct {
	Spool  *Spool
	Ledger Recorder
}

// RecordSerialAssertion spools a, records it, and removes it from the
// spool once recorded. A spool that cannot be written does not stop the
// ledger write.
func (r Recording) RecordSerialAssertion(ctx context.Context, a record.SerialAssertion) (int64, bool, error) {
	key, spoolErr := r.Spool.Put(Entry{Assertion: a})
	id, created, err := r.Ledger.RecordSerialAssertion(ctx, a)
	if err != nil {
		if spoolErr != nil {
			return 0, false, fmt.Errorf("%w (and %v)", err, spoolErr)
		}
		return 0, false, err
	}
	if spoolErr == nil {
		_ = r.Spool.Done(key)
	}
	return id, created, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
