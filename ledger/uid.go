package ledger

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// NewUID returns a UUIDv7 (RFC 9562) for a row recorded at t: 48 bits of
// Unix milliseconds, the version, 74 random bits, in the lowercase
// 8-4-4-4-12 form. Rows of every bench get one, so they never collide in
// a factory ledger, and ids sort by time.
func NewUID(t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint64(b[:8], ms<<16)
	_, _ = rand.Read(b[6:])
	b[6] = 0x70 | b[6]&0x0f
	b[8] = 0x80 | b[8]&0x3f
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// UIDTime is the time a UUIDv7 carries (its first 48 bits).
func UIDTime(uid string) (time.Time, bool) {
	if len(uid) != 36 || uid[14] != '7' {
		return time.Time{}, false
	}
	raw, err := hex.DecodeString(uid[0:8] + uid[9:13])
	if err != nil {
		return time.Time{}, false
	}
	var b [8]byte
	copy(b[2:], raw)
	return time.UnixMilli(int64(binary.BigEndian.Uint64(b[:]))).UTC(), true
}
