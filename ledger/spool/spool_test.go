package spool_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/internal/disktest"
	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/ledger/spool"
)

type fakeLedger struct {
	fail bool
	got  []ledger.SerialAssertion
}

func (f *fakeLedger) RecordSerialAssertion(_ context.Context, a ledger.SerialAssertion) (int64, bool, error) {
	if f.fail {
		return 0, false, errors.New("disk full")
	}
	f.got = append(f.got, a)
	return int64(len(f.got)), true, nil
}

func assertion(serial string, at time.Time) ledger.SerialAssertion {
	return ledger.SerialAssertion{Text: []byte("type: serial\nserial: " + serial + "\n"), Serial: serial, LineID: "line1", ReceivedAt: at}
}

// TestSpoolKeepsUntilRecorded: what cannot go into the ledger stays
// spooled, across a "restart" (a new Spool on the same directory), and is
// replayed in order once the ledger takes it.
func TestSpoolKeepsUntilRecorded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := spool.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	led := &fakeLedger{fail: true}
	rec := spool.Recording{Spool: s, Ledger: led}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i, serial := range []string{"S-2", "S-1"} {
		if _, _, err := rec.RecordSerialAssertion(context.Background(), assertion(serial, t0.Add(time.Duration(-i)*time.Second))); err == nil {
			t.Fatal("a failing ledger reported success")
		}
	}
	// A write cut by a kill leaves only a temporary file: ignored.
	os.WriteFile(filepath.Join(dir, "deadbeef.123.tmp"), []byte("{"), 0o600)

	s2, _ := spool.Open(dir) // the next start
	pending, err := s2.Pending()
	if err != nil || len(pending) != 2 || pending[0].Assertion.Serial != "S-1" {
		t.Fatalf("pending %+v %v", pending, err)
	}
	if _, err := s2.Replay(context.Background(), led); err == nil {
		t.Fatal("replay into a failing ledger succeeded")
	}
	if p, _ := s2.Pending(); len(p) != 2 {
		t.Fatalf("a failed replay lost entries: %d left", len(p))
	}
	led.fail = false
	done, err := s2.Replay(context.Background(), led)
	if err != nil || len(done) != 2 || len(led.got) != 2 || led.got[0].Serial != "S-1" {
		t.Fatalf("replay: %v %d %+v", err, len(done), led.got)
	}
	if p, _ := s2.Pending(); len(p) != 0 {
		t.Errorf("%d left after replay", len(p))
	}
	// Recorded at once: nothing stays.
	if _, _, err := rec.RecordSerialAssertion(context.Background(), assertion("S-3", t0)); err != nil {
		t.Fatal(err)
	}
	if p, _ := s2.Pending(); len(p) != 0 {
		t.Errorf("a recorded serial stayed spooled")
	}
}

// TestSpoolKeepsWhatItCannotRead: a damaged entry is reported and never
// removed (QA decides), the others replay.
func TestSpoolKeepsWhatItCannotRead(t *testing.T) {
	dir := t.TempDir()
	s, _ := spool.Open(dir)
	if _, err := s.Put(spool.Entry{Assertion: assertion("OK-1", time.Now())}); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, strings.Repeat("a", 64)+".json")
	os.WriteFile(bad, []byte("not json"), 0o600)
	led := &fakeLedger{}
	done, err := s.Replay(context.Background(), led)
	if err == nil || !strings.Contains(err.Error(), "unreadable") || len(done) != 1 {
		t.Errorf("replay: %v, %d done", err, len(done))
	}
	if _, err := os.Stat(bad); err != nil {
		t.Errorf("the damaged entry was removed: %v", err)
	}
	if _, err := s.Put(spool.Entry{}); err == nil {
		t.Error("an empty entry was spooled")
	}
}

// TestSpoolOnAFullDisk: on a full disk (a small tmpfs, filled) the spool
// still takes a signed serial, in the room its reserve kept; the reserve
// comes back once there is room again. Needs root (it mounts a tmpfs).
func TestSpoolOnAFullDisk(t *testing.T) {
	dir := disktest.Tmpfs(t, t.TempDir(), "8m")
	s, err := spool.Open(filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "spool", ".reserve")); err != nil || fi.Size() < spool.ReserveBytes {
		t.Fatalf("no reserve: %v", err)
	}
	free := disktest.Fill(t, dir)  // as the ledger and the transcripts would
	led := &fakeLedger{fail: true} // a full disk fails the ledger too
	if _, _, err := (spool.Recording{Spool: s, Ledger: led}).RecordSerialAssertion(context.Background(), assertion("FULL-1", time.Now())); err == nil {
		t.Fatal("the ledger wrote on a full disk")
	}
	if p, err := s.Pending(); err != nil || len(p) != 1 {
		t.Fatalf("the signed serial is not in the spool: %d %v", len(p), err)
	}
	// Room again: the serial goes into the ledger and the reserve returns.
	free()
	led.fail = false
	if done, err := s.Replay(context.Background(), led); err != nil || len(done) != 1 || led.got[0].Serial != "FULL-1" {
		t.Fatalf("replay %v %d", err, len(done))
	}
	if fi, err := os.Stat(filepath.Join(dir, "spool", ".reserve")); err != nil || fi.Size() < spool.ReserveBytes {
		t.Errorf("the reserve did not return: %v", err)
	}
}

// TestCount: read-only commands count a spool without creating one.
func TestCount(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if n, err := spool.Count(dir); n != 0 || err != nil {
		t.Errorf("missing spool: %d %v", n, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Count created the spool: %v", err)
	}
	s, _ := spool.Open(dir)
	s.Put(spool.Entry{Assertion: assertion("C-1", time.Now())})
	if n, err := spool.Count(dir); n != 1 || err != nil {
		t.Errorf("count %d %v", n, err)
	}
}
