package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

// MaxForwardedTranscript is the largest transcript file forwarded to the
// factory ledger; a bigger one stays at the bench (its row says where).
const MaxForwardedTranscript = 16 << 20

// maxUnpacked bounds what a factory ledger's transcript may expand to.
const maxUnpacked = MaxForwardedTranscript

var (
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxUnpacked))
)

// packTranscript is the transcript file at path, compressed, when it is
// still the file the ledger recorded (its size and SHA-256, when
// recorded) and not too big; nil otherwise.
func packTranscript(path, sum string, size int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxForwardedTranscript+1))
	if err != nil || len(b) > MaxForwardedTranscript || (size > 0 && int64(len(b)) != size) {
		return nil
	}
	if sum != "" {
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			return nil
		}
	}
	return zenc.EncodeAll(b, nil)
}

// unpackTranscript undoes packTranscript.
func unpackTranscript(b []byte) ([]byte, error) {
	out, err := zdec.DecodeAll(b, nil)
	if err != nil {
		return nil, fmt.Errorf("unpack transcript: %w", err)
	}
	if len(out) > maxUnpacked {
		return nil, errors.New("unpack transcript: too big")
	}
	return out, nil
}
