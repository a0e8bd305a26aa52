package ledger_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/internal/disktest"
	"github.com/flashstation/flashstation/ledger"
)

// copyFile copies a ledger file, as an auditor takes a copy.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// readBack checks what a read-only ledger shows of the tamper bench, and
// that it refuses to write.
func readBack(t *testing.T, l *ledger.Ledger) {
	t.Helper()
	ctx := context.Background()
	if !l.ReadOnly() {
		t.Error("not read-only")
	}
	as, err := l.SerialAssertions(ctx, ledger.AssertionFilter{})
	if err != nil || len(as) != 3 {
		t.Fatalf("assertions %d %v", len(as), err)
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK {
		t.Errorf("verify %+v %v", rep, err)
	}
	if _, err := l.StartBatch(ctx, ledger.Batch{LineID: "line1"}); !errors.Is(err, ledger.ErrReadOnly) {
		t.Errorf("a write: %v, want ErrReadOnly", err)
	}
	if _, _, err := l.RecordSerialAssertion(ctx, assertion("RO-1", 1)); !errors.Is(err, ledger.ErrReadOnly) {
		t.Errorf("a serial: %v, want ErrReadOnly", err)
	}
}

// TestOpenReadOnlyBesideTheStation: a reading command opens the live
// ledger read-only while the station has it open, sees its rows, writes
// nothing (the file's bytes do not change), and cannot write.
func TestOpenReadOnlyBesideTheStation(t *testing.T) {
	b := newTamperBench(t, sqliteBackend)
	before, err := os.ReadFile(b.l.Path())
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.OpenReadOnly(context.Background(), b.l.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	readBack(t, l)
	after, _ := os.ReadFile(b.l.Path())
	if string(before) != string(after) {
		t.Error("reading changed the ledger file")
	}
	none := filepath.Join(t.TempDir(), "none.db")
	if _, err := ledger.OpenReadOnly(context.Background(), none); err == nil {
		t.Error("a missing ledger opened")
	}
	if _, err := os.Stat(none); !os.IsNotExist(err) {
		t.Error("OpenReadOnly created a file")
	}
}

// TestOpenReadOnlyCopy: a copy of the ledger on a read-only file system
// (a tmpfs remounted read-only: SQLite can create neither its journal nor
// its shared memory there) opens and verifies. Needs root.
func TestOpenReadOnlyCopy(t *testing.T) {
	b := newTamperBench(t, sqliteBackend)
	b.raw.Close()
	if err := b.l.Close(); err != nil { // checkpoints: the copy is one file
		t.Fatal(err)
	}
	dir := disktest.Tmpfs(t, t.TempDir(), "8m")
	copyFile(t, b.l.Path(), filepath.Join(dir, ledger.FileName))
	disktest.ReadOnly(t, dir)
	if _, err := ledger.Open(context.Background(), filepath.Join(dir, ledger.FileName)); err == nil {
		t.Log("note: a read-write open of the copy succeeded")
	}
	l, err := ledger.OpenReadOnly(context.Background(), filepath.Join(dir, ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	readBack(t, l)
}

// TestOpenReadOnlyCopyWithLog: a read-only copy that holds a write-ahead
// log with rows the main file lacks is refused with what to do, never read
// without those rows. Needs root.
func TestOpenReadOnlyCopyWithLog(t *testing.T) {
	b := newTamperBench(t, sqliteBackend) // open: its newest rows are in the log
	dir := disktest.Tmpfs(t, t.TempDir(), "8m")
	for _, suffix := range []string{"", "-wal"} {
		copyFile(t, b.l.Path()+suffix, filepath.Join(dir, ledger.FileName+suffix))
	}
	disktest.ReadOnly(t, dir)
	l, err := ledger.OpenReadOnly(context.Background(), filepath.Join(dir, ledger.FileName))
	if err == nil {
		as, _ := l.SerialAssertions(context.Background(), ledger.AssertionFilter{})
		l.Close()
		t.Fatalf("a copy whose log cannot be read opened, showing %d of 3 assertions", len(as))
	}
	if !strings.Contains(err.Error(), "write-ahead log") {
		t.Errorf("error %v does not say why", err)
	}
}

// TestOpenReadOnlyOldSchema: a ledger of another schema version is not
// read (it is not migrated either): the error says what to do.
func TestOpenReadOnlyOldSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), ledger.FileName)
	if err := ledger.MigrateTo(context.Background(), path, 1); err != nil {
		t.Fatal(err)
	}
	_, err := ledger.OpenReadOnly(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "schema version 1") {
		t.Fatalf("old schema: %v", err)
	}
}
