package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

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
	if sum == "" || size < 0 || size > MaxForwardedTranscript {
		return nil // nothing to check it against, or too big
	}
	// Never blocks: a FIFO or device in the file's place is not read, a
	// link is not followed.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() != size {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(f, size+1))
	if err != nil || int64(len(b)) != size {
		return nil
	}
	got := sha256.Sum256(b)
	if hex.EncodeToString(got[:]) != sum {
		return nil
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
