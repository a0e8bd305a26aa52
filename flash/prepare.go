package flash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Chunk is a piece of the mapped image: at most the cache's chunk size,
// never crossing a chunk-size boundary, with the SHA-256 of its bytes.
type Chunk struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
}

// Prepared is an image ready to flash: a sparse raw file in the cache, its
// map as chunks with checksums, and where it came from.
type Prepared struct {
	Key          string    `json:"key"`
	Source       string    `json:"source"`
	SourceSHA256 string    `json:"source_sha256"`
	Format       Format    `json:"format"`
	Size         int64     `json:"size"`
	BlockSize    int64     `json:"block_size"`
	ChunkSize    int64     `json:"chunk_size"`
	MappedBytes  int64     `json:"mapped_bytes"`
	Bmap         *BmapInfo `json:"bmap,omitempty"`
	Chunks       []Chunk   `json:"chunks"`
	PreparedAt   time.Time `json:"prepared_at"`
	PrepareTime  float64   `json:"prepare_seconds"`
	// RawIdentity is the cache file's identity once written and synced:
	// while it has not changed (written, replaced, truncated), a station
	// loading the image trusts its bytes; otherwise every chunk is checked
	// against its SHA-256 before it is flashed.
	RawIdentity string `json:"raw_identity,omitempty"`

	// RawPath is the cached raw image; Cached says it was prepared before
	// (neither is stored in the manifest).
	RawPath string `json:"-"`
	Cached  bool   `json:"-"`

	fill     *filling     // the preparation, for an image Open returned while it ran
	win      *windows     // maps the cache file for the targets
	checks   *chunkChecks // for an image loaded from the cache
	estimate int64        // mapped bytes expected while filling (a bmap's), 0 if unknown
}

// BmapInfo says which bmap a preparation honoured.
type BmapInfo struct {
	Path    string `json:"path"`
	SHA256  string `json:"sha256"`
	Version string `json:"version"`
}

const (
	zeroBlock = 4096
	mergeGap  = 256 << 10
)

// ErrImageRefused wraps every reason an image is refused before flashing:
// a wrong hash, a corrupt stream, a bmap that does not match.
var ErrImageRefused = errors.New("image refused")

// preparer streams a raw image into a sparse cache file, building the chunk
// list and checking bmap range checksums on the way.
type preparer struct {
	out       *os.File
	chunkSize int64
	bmap      *Bmap
	progress  func(done int64)
	// publish, when set, receives each chunk once its bytes are in out
	// (its SHA256 set): the targets streaming the first flash write it.
	publish func(Chunk)
	size    int64 // out's size: extended to each chunk's end before it is published

	chunks []Chunk
	done   []Chunk // completed, not published yet
	cur    *Chunk
	curH   hash.Hash
	mapped int64

	// bmap checking: the range being hashed.
	ri    int
	rhash hash.Hash

	reader sync.WaitGroup // run's read-ahead goroutine
}

// wait returns once run's reader has stopped. Call it after run returns:
// with a decoder that can be closed under a read (the xz process) after
// closing it, which ends a read that blocks; with any other stream before
// closing it.
func (p *preparer) wait() { p.reader.Wait() }

// hashMapped records raw bytes [off, off+len(data)) as mapped: hashed
// into chunks, which never cross a chunk-size boundary. A chunk is
// complete when the next one starts (or the stream ends): it is appended
// to p.chunks and to p.done, to be published once its bytes are written.
// It runs beside writeSegs, touching none of the fields that does.
func (p *preparer) hashMapped(data []byte, off int64) {
	for len(data) > 0 {
		boundary := (off/p.chunkSize + 1) * p.chunkSize
		n := min(int64(len(data)), boundary-off)
		if p.cur == nil || p.cur.Offset+p.cur.Length != off || off%p.chunkSize == 0 {
			p.endChunk()
			p.cur = &Chunk{Offset: off}
			p.curH = sha256.New()
		}
		p.curH.Write(data[:n])
		p.cur.Length += n
		p.mapped += n
		data = data[n:]
		off += n
	}
}

// endChunk completes the chunk being hashed, if any.
func (p *preparer) endChunk() {
	if p.cur == nil {
		return
	}
	c := *p.cur
	c.SHA256 = hex.EncodeToString(p.curH.Sum(nil))
	p.chunks = append(p.chunks, c)
	p.done = append(p.done, c)
	p.cur = nil
}

// writeSegs writes the non-zero blocks of the window's mapped segments
// to the cache file (a hole reads as zeros).
func (p *preparer) writeSegs(buf []byte, off int64, segs []seg) error {
	for _, sg := range segs {
		end, err := writeNonZero(p.out, buf[sg.lo-off:sg.hi-off], sg.lo)
		if err != nil {
			return err
		}
		p.size = max(p.size, end)
	}
	return nil
}

// publishDone hands the chunks completed so far (hashed, and their bytes
// written) to the streaming targets.
func (p *preparer) publishDone() error {
	done := p.done
	p.done = p.done[:0]
	if p.publish == nil {
		return nil
	}
	for _, c := range done {
		// A chunk that ends in zeros left a hole past the file's end: extend
		// the file first, or a target mapping the chunk would fault.
		if end := c.Offset + c.Length; end > p.size {
			if err := p.out.Truncate(end); err != nil {
				return err
			}
			p.size = end
		}
		p.publish(c)
	}
	return nil
}

// writeNonZero writes the non-zero 4 KiB blocks of p at off, and returns
// the end of the last one written (0 when p is all zeros).
func writeNonZero(f *os.File, p []byte, off int64) (int64, error) {
	start := -1
	var last int64
	flush := func(end int) error {
		if start < 0 {
			return nil
		}
		_, err := f.WriteAt(p[start:end], off+int64(start))
		start, last = -1, off+int64(end)
		return err
	}
	for i := 0; i < len(p); i += zeroBlock {
		end := min(i+zeroBlock, len(p))
		if isZero(p[i:end]) {
			if err := flush(i); err != nil {
				return 0, err
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	err := flush(len(p))
	return last, err
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// window handles one buffer of the raw stream at off: its mapped bytes
// are hashed (chunk digests, bmap range checksums) on one goroutine while
// they are written to the cache file on this one, as each alone keeps a
// core busy; the chunks completed are published once both are done.
func (p *preparer) window(buf []byte, off int64) error {
	segs := p.mappedSegs(buf, off)
	var herr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		herr = p.hashWindow(buf, off, segs)
	}()
	werr := p.writeSegs(buf, off, segs)
	wg.Wait()
	if herr != nil { // a refused image before a write error in the same window
		return herr
	}
	if werr != nil {
		return werr
	}
	return p.publishDone()
}

// seg is a mapped byte range of a window (absolute offsets); with a bmap,
// the range it lies in (ri) and whether that range ends in it.
type seg struct {
	lo, hi int64
	ri     int
	ends   bool
}

// mappedSegs lists the window's mapped byte ranges. Without a bmap the
// non-zero blocks are the map, and zero gaps shorter than mergeGap stay
// mapped, as few large writes beat many small ones; with one its ranges
// are (zero blocks in them included).
func (p *preparer) mappedSegs(buf []byte, off int64) []seg {
	var segs []seg
	if p.bmap == nil {
		start, last := -1, -1
		for i := 0; i < len(buf); i += zeroBlock {
			end := min(i+zeroBlock, len(buf))
			if isZero(buf[i:end]) {
				continue
			}
			if start >= 0 && i-last >= mergeGap {
				segs = append(segs, seg{lo: off + int64(start), hi: off + int64(last), ri: -1})
				start = -1
			}
			if start < 0 {
				start = i
			}
			last = end
		}
		if start >= 0 {
			segs = append(segs, seg{lo: off + int64(start), hi: off + int64(last), ri: -1})
		}
		return segs
	}
	end := off + int64(len(buf))
	for ri := p.ri; ri < len(p.bmap.Ranges); ri++ {
		rOff, rLen := p.bmap.byteRange(p.bmap.Ranges[ri])
		if rOff >= end {
			break
		}
		segs = append(segs, seg{lo: max(rOff, off), hi: min(rOff+rLen, end), ri: ri, ends: rOff+rLen <= end})
		if rOff+rLen > end {
			break
		}
	}
	return segs
}

// hashWindow hashes the window's mapped segments into chunks and, with a
// bmap, checks each range's checksum as its last bytes go by.
func (p *preparer) hashWindow(buf []byte, off int64, segs []seg) error {
	for _, sg := range segs {
		piece := buf[sg.lo-off : sg.hi-off]
		p.hashMapped(piece, sg.lo)
		if sg.ri < 0 {
			continue
		}
		r := p.bmap.Ranges[sg.ri]
		if r.Checksum == "" {
			if sg.ends {
				p.ri = sg.ri + 1
			}
			continue
		}
		if p.rhash == nil {
			p.rhash = p.bmap.newHash()
		}
		p.rhash.Write(piece)
		if !sg.ends {
			continue
		}
		if got := hex.EncodeToString(p.rhash.Sum(nil)); got != r.Checksum {
			return fmt.Errorf("%w: blocks %d-%d do not match the bmap's checksum (corrupt image, or the bmap of another image)",
				ErrImageRefused, r.First, r.Last)
		}
		p.rhash = nil
		p.ri = sg.ri + 1
	}
	return nil
}

// run copies the raw stream r (size unknown) into out and builds the
// chunk list; the image size is the stream's length. A reader goroutine
// keeps reading ahead (readAhead buffers) while a window is hashed and
// written, so a decompressor never waits on them; it stops reading when
// run returns, and wait joins it (see wait for when the caller closes r).
func (p *preparer) run(ctx context.Context, r io.Reader) (size int64, err error) {
	const readAhead = 3
	free := make(chan []byte, readAhead)
	for range readAhead {
		free <- make([]byte, p.chunkSize)
	}
	type read struct {
		buf []byte
		n   int
		err error
	}
	// Never full: no more than readAhead buffers exist.
	filled := make(chan read, readAhead)
	stop := make(chan struct{})
	defer close(stop)
	p.reader.Add(1)
	go func() {
		defer p.reader.Done()
		for {
			var buf []byte
			select {
			case <-stop:
				return
			case buf = <-free:
			}
			select {
			case <-stop:
				return
			default:
			}
			n, err := fill(r, buf)
			filled <- read{buf, n, err}
			if err != nil {
				return
			}
		}
	}()
	var off int64
	for {
		var rd read
		select {
		case <-ctx.Done():
			return off, ctx.Err()
		case rd = <-filled:
		}
		if rd.n > 0 {
			if err := p.window(rd.buf[:rd.n], off); err != nil {
				return off, err
			}
			off += int64(rd.n)
			if p.progress != nil {
				p.progress(off)
			}
		}
		free <- rd.buf
		if rd.err == io.EOF {
			break
		}
		if rerr := rd.err; rerr != nil {
			// A decoder's io.ErrUnexpectedEOF is a truncated stream, not
			// the end of the image.
			if ctx.Err() != nil {
				return off, ctx.Err()
			}
			return off, fmt.Errorf("%w: cannot decompress the image at byte %d (truncated or corrupt file): %w", ErrImageRefused, off, rerr)
		}
	}
	p.endChunk()
	if err := p.publishDone(); err != nil {
		return off, err
	}
	if off == 0 {
		return off, fmt.Errorf("%w: the image is empty (0 bytes)", ErrImageRefused)
	}
	if p.bmap != nil {
		if off != p.bmap.ImageSize {
			return off, fmt.Errorf("%w: the image is %d bytes, its bmap says %d", ErrImageRefused, off, p.bmap.ImageSize)
		}
		if p.ri != len(p.bmap.Ranges) {
			return off, fmt.Errorf("%w: the image ends before bmap range %d", ErrImageRefused, p.ri+1)
		}
	}
	if err := p.out.Truncate(off); err != nil {
		return off, err
	}
	return off, nil
}

// fill reads r until buf is full or r fails. Unlike io.ReadFull it hands
// back r's own error: io.EOF only for a stream that ended cleanly, so a
// decoder's io.ErrUnexpectedEOF (a cut stream) is never taken for the end
// of the image.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// dataSegments lists the allocated regions of a raw file with
// SEEK_DATA/SEEK_HOLE, so a sparse raw source is read only where it holds
// data. It returns one segment covering the file when the file system
// cannot tell.
func dataSegments(f *os.File, size int64) [][2]int64 {
	var segs [][2]int64
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, syscall.ENXIO) { // no data after off
				break
			}
			return [][2]int64{{0, size}}
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return [][2]int64{{0, size}}
		}
		segs = append(segs, [2]int64{start, min(end, size)})
		off = end
	}
	return segs
}

// sparseReader reads a raw file as a stream but seeks over its holes,
// which read as zeros without touching the disk.
type sparseReader struct {
	f    *os.File
	segs [][2]int64
	size int64
	off  int64
}

func (s *sparseReader) Read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	for len(s.segs) > 0 && s.segs[0][1] <= s.off {
		s.segs = s.segs[1:]
	}
	n := min(int64(len(p)), s.size-s.off)
	if len(s.segs) == 0 || s.segs[0][0] > s.off {
		// In a hole: zeros up to the next data.
		if len(s.segs) > 0 {
			n = min(n, s.segs[0][0]-s.off)
		}
		clear(p[:n])
		s.off += n
		return int(n), nil
	}
	n = min(n, s.segs[0][1]-s.off)
	got, err := s.f.ReadAt(p[:n], s.off)
	s.off += int64(got)
	if err == io.EOF && s.off < s.size {
		err = io.ErrUnexpectedEOF
	}
	if err == io.EOF {
		err = nil
	}
	return got, err
}
