package console

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A raw transcript holds one record per line of text:
//
//	2026-11-28T10:00:00.123456Z < "U-Boot 2020.10\r\n"
//
// the time (UTC), the direction ("<" from the board, ">" to it, "!" a
// station note such as a gap) and the bytes as a Go-quoted string. Records
// are written whole with one write each and synced every second, so a
// crash loses at most the last second and can only leave a partial last
// line, which readers skip.

// Transcript records a console durably as the bytes arrive.
type Transcript struct {
	mu       sync.Mutex
	f        *os.File
	lastSync time.Time
	err      error
	secrets  [][]byte
}

// CreateTranscript opens (appending to) a raw transcript file.
func CreateTranscript(path string) (*Transcript, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("transcript: %w", err)
	}
	return &Transcript{f: f}, nil
}

// Mask hides a secret should it ever come back from the board (an echoed
// password).
func (t *Transcript) Mask(secret []byte) {
	if len(secret) == 0 {
		return
	}
	t.mu.Lock()
	t.secrets = append(t.secrets, append([]byte(nil), secret...))
	t.mu.Unlock()
}

func (t *Transcript) record(at time.Time, dir byte, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f == nil || t.err != nil {
		return
	}
	for _, s := range t.secrets {
		data = bytes.ReplaceAll(data, s, []byte("[redacted]"))
	}
	line := make([]byte, 0, len(data)+48)
	line = at.UTC().AppendFormat(line, "2006-01-02T15:04:05.000000Z")
	line = append(line, ' ', dir, ' ')
	line = strconv.AppendQuote(line, string(data))
	line = append(line, '\n')
	if _, err := t.f.Write(line); err != nil {
		t.err = err
		return
	}
	if time.Since(t.lastSync) >= time.Second {
		t.lastSync = time.Now()
		_ = t.f.Sync()
	}
}

// Received records bytes from the board.
func (t *Transcript) Received(at time.Time, data []byte) { t.record(at, '<', data) }

// Sent records bytes sent to the board (never a secret: callers pass a
// placeholder for those).
func (t *Transcript) Sent(data []byte) { t.record(time.Now(), '>', data) }

// Mark records a station note (a gap, a stage).
func (t *Transcript) Mark(at time.Time, note string) { t.record(at, '!', []byte(note)) }

// Err is the first write error, if any.
func (t *Transcript) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Close syncs and closes the file.
func (t *Transcript) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f == nil {
		return nil
	}
	serr := t.f.Sync()
	err := t.f.Close()
	t.f = nil
	if t.err != nil {
		return t.err
	}
	if serr != nil {
		return serr
	}
	return err
}

// Record is one transcript record.
type Record struct {
	At   time.Time
	Dir  byte // '<', '>' or '!'
	Data []byte
}

// ReadTranscript reads a raw transcript, skipping a partial last record
// (a crash mid-write) and reporting other damage.
func ReadTranscript(r io.Reader) ([]Record, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out []Record
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			return out, nil // a partial last record is dropped
		}
		if err != nil {
			return out, err
		}
		rec, perr := parseRecord(strings.TrimSuffix(line, "\n"))
		if perr != nil {
			return out, fmt.Errorf("transcript record %d: %w", n, perr)
		}
		out = append(out, rec)
	}
}

func parseRecord(line string) (Record, error) {
	ts, rest, ok := strings.Cut(line, " ")
	if !ok || len(rest) < 3 || rest[1] != ' ' {
		return Record{}, fmt.Errorf("malformed")
	}
	at, err := time.Parse("2006-01-02T15:04:05.000000Z", ts)
	if err != nil {
		return Record{}, err
	}
	data, err := strconv.Unquote(rest[2:])
	if err != nil {
		return Record{}, err
	}
	return Record{At: at, Dir: rest[0], Data: []byte(data)}, nil
}

// RenderClean writes the QA rendering of a transcript: one line per
// console line with the seconds since the start, escape sequences removed,
// each run of unreadable bytes (a wrong baud rate, line noise, control
// characters) shown as one marker with its byte count ("‹312 unreadable
// bytes›"), and what the station sent or noted.
func RenderClean(recs []Record, w io.Writer) error {
	if len(recs) == 0 {
		return nil
	}
	start := recs[0].At
	bw := bufio.NewWriter(w)
	s := Splitter{MarkUnreadable: true}
	var lineStart time.Time
	flushLines := func() {
		for _, l := range s.Lines() {
			fmt.Fprintf(bw, "[%9.3f] %s\n", lineStart.Sub(start).Seconds(), l)
		}
	}
	for _, r := range recs {
		switch r.Dir {
		case '<':
			if s.Partial() == "" {
				lineStart = r.At
			}
			s.Write(r.Data)
			flushLines()
			if s.Partial() == "" {
				lineStart = r.At
			}
		case '>':
			q := strconv.Quote(string(r.Data))
			fmt.Fprintf(bw, "[%9.3f] >>> %s\n", r.At.Sub(start).Seconds(), q[1:len(q)-1])
		case '!':
			fmt.Fprintf(bw, "[%9.3f] --- %s ---\n", r.At.Sub(start).Seconds(), r.Data)
		}
	}
	if p := s.Partial(); p != "" {
		fmt.Fprintf(bw, "[%9.3f] %s\n", lineStart.Sub(start).Seconds(), p)
	}
	return bw.Flush()
}
