package flash

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Android sparse image format, as fastboot sends images.
const (
	SparseMagic     = 0xed26ff3a
	sparseHeaderLen = 28
	chunkHeaderLen  = 12

	ChunkRaw      = 0xcac1
	ChunkFill     = 0xcac2
	ChunkDontCare = 0xcac3
	ChunkCRC32    = 0xcac4
)

// SparseChunk is one chunk of a sparse image: Blocks blocks of Type; RAW
// chunks take their data from the raw image at Offset.
type SparseChunk struct {
	Type   uint16
	Blocks uint32
	Offset int64 // raw image offset of a RAW chunk's data
	Fill   uint32
}

// SparsePiece is one sparse image that fits the device's download buffer.
// Every piece describes the whole partition: what it does not carry is
// DONT_CARE, so pieces can be flashed one after another.
type SparsePiece struct {
	BlockSize   uint32
	TotalBlocks uint32
	Chunks      []SparseChunk
	RawBytes    int64 // image bytes carried
}

// Size is the piece's encoded size in bytes.
func (p *SparsePiece) Size() int64 {
	n := int64(sparseHeaderLen)
	for _, c := range p.Chunks {
		n += chunkHeaderLen
		switch c.Type {
		case ChunkRaw:
			n += int64(c.Blocks) * int64(p.BlockSize)
		case ChunkFill, ChunkCRC32:
			n += 4
		}
	}
	return n
}

// PlanSparse splits a prepared image into sparse pieces of at most
// maxSize bytes each: the mapped chunks become RAW chunks, everything else
// DONT_CARE, so unmapped ranges are never sent.
func PlanSparse(img *Prepared, maxSize int64) ([]*SparsePiece, error) {
	const blk = 4096
	total := (img.Size + blk - 1) / blk
	if total > 1<<32-1 {
		return nil, fmt.Errorf("image too large for a sparse image")
	}
	// Room for the header, a leading and trailing DONT_CARE and one RAW
	// chunk with at least one block.
	if maxSize < sparseHeaderLen+3*chunkHeaderLen+blk {
		return nil, fmt.Errorf("max-download-size %d is too small", maxSize)
	}
	var pieces []*SparsePiece
	var cur *SparsePiece
	var curBlock int64 // next block the current piece describes
	var size int64
	start := func() {
		cur = &SparsePiece{BlockSize: blk, TotalBlocks: uint32(total)}
		curBlock, size = 0, sparseHeaderLen+chunkHeaderLen // header + final DONT_CARE
	}
	finish := func() {
		if cur == nil || cur.RawBytes == 0 {
			return
		}
		if curBlock < total {
			cur.Chunks = append(cur.Chunks, SparseChunk{Type: ChunkDontCare, Blocks: uint32(total - curBlock)})
		}
		pieces = append(pieces, cur)
		cur = nil
	}
	start()
	for _, c := range img.Chunks {
		first := c.Offset / blk
		last := (c.Offset + c.Length + blk - 1) / blk // exclusive
		for first < last {
			if first < curBlock { // overlapping blocks of adjacent chunks
				first = curBlock
				if first >= last {
					break
				}
			}
			gap := int64(0)
			if first > curBlock {
				gap = chunkHeaderLen
			}
			room := (maxSize - size - gap - chunkHeaderLen) / blk
			if room <= 0 {
				finish()
				start()
				continue
			}
			n := min(last-first, room)
			if first > curBlock {
				cur.Chunks = append(cur.Chunks, SparseChunk{Type: ChunkDontCare, Blocks: uint32(first - curBlock)})
			}
			cur.Chunks = append(cur.Chunks, SparseChunk{Type: ChunkRaw, Blocks: uint32(n), Offset: first * blk})
			cur.RawBytes += n * blk
			size += gap + chunkHeaderLen + n*blk
			curBlock = first + n
			first += n
		}
	}
	finish()
	return pieces, nil
}

// WriteTo encodes the piece, reading RAW data from the raw image src of
// size imageSize (bytes past its end are zeros).
func (p *SparsePiece) WriteTo(w io.Writer, src io.ReaderAt, imageSize int64) (int64, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	var hdr [sparseHeaderLen]byte
	binary.LittleEndian.PutUint32(hdr[0:], SparseMagic)
	binary.LittleEndian.PutUint16(hdr[4:], 1) // major
	binary.LittleEndian.PutUint16(hdr[6:], 0) // minor
	binary.LittleEndian.PutUint16(hdr[8:], sparseHeaderLen)
	binary.LittleEndian.PutUint16(hdr[10:], chunkHeaderLen)
	binary.LittleEndian.PutUint32(hdr[12:], p.BlockSize)
	binary.LittleEndian.PutUint32(hdr[16:], p.TotalBlocks)
	binary.LittleEndian.PutUint32(hdr[20:], uint32(len(p.Chunks)))
	binary.LittleEndian.PutUint32(hdr[24:], 0) // no image checksum
	n, err := bw.Write(hdr[:])
	written := int64(n)
	if err != nil {
		return written, err
	}
	buf := make([]byte, 1<<20)
	for _, c := range p.Chunks {
		var ch [chunkHeaderLen]byte
		binary.LittleEndian.PutUint16(ch[0:], c.Type)
		binary.LittleEndian.PutUint32(ch[4:], c.Blocks)
		dataLen := int64(0)
		switch c.Type {
		case ChunkRaw:
			dataLen = int64(c.Blocks) * int64(p.BlockSize)
		case ChunkFill, ChunkCRC32:
			dataLen = 4
		}
		binary.LittleEndian.PutUint32(ch[8:], uint32(chunkHeaderLen+dataLen))
		n, err := bw.Write(ch[:])
		written += int64(n)
		if err != nil {
			return written, err
		}
		switch c.Type {
		case ChunkRaw:
			for off, end := c.Offset, c.Offset+dataLen; off < end; {
				m := min(int64(len(buf)), end-off)
				b := buf[:m]
				clear(b)
				if off < imageSize {
					got, err := src.ReadAt(b[:min(m, imageSize-off)], off)
					if err != nil && !(errors.Is(err, io.EOF) && int64(got) == min(m, imageSize-off)) {
						return written, fmt.Errorf("read image at %d: %w", off, err)
					}
				}
				n, err := bw.Write(b)
				written += int64(n)
				if err != nil {
					return written, err
				}
				off += m
			}
		case ChunkFill:
			var f [4]byte
			binary.LittleEndian.PutUint32(f[:], c.Fill)
			n, err := bw.Write(f[:])
			written += int64(n)
			if err != nil {
				return written, err
			}
		}
	}
	return written, bw.Flush()
}

// IsSparse reports whether data starts with the sparse image magic.
func IsSparse(head []byte) bool {
	return len(head) >= 4 && binary.LittleEndian.Uint32(head) == SparseMagic
}

// ApplySparse decodes a sparse image from r and writes its RAW and FILL
// chunks to w at their block offsets; DONT_CARE ranges are left as they
// are. It refuses images larger than maxBytes (the partition). It returns
// the number of bytes the image describes.
func ApplySparse(r io.Reader, w io.WriterAt, maxBytes int64) (int64, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var hdr [sparseHeaderLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, fmt.Errorf("sparse header: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint32(hdr[0:]) != SparseMagic {
		return 0, fmt.Errorf("not a sparse image")
	}
	if major := le.Uint16(hdr[4:]); major != 1 {
		return 0, fmt.Errorf("sparse major version %d not supported", major)
	}
	fileHdr, chunkHdr := int(le.Uint16(hdr[8:])), int(le.Uint16(hdr[10:]))
	blk := int64(le.Uint32(hdr[12:]))
	totalBlocks := int64(le.Uint32(hdr[16:]))
	chunks := le.Uint32(hdr[20:])
	if fileHdr < sparseHeaderLen || chunkHdr < chunkHeaderLen || fileHdr > 1024 || chunkHdr > 1024 {
		return 0, fmt.Errorf("sparse header sizes %d/%d are invalid", fileHdr, chunkHdr)
	}
	if blk == 0 || blk%4 != 0 || blk > 1<<24 {
		return 0, fmt.Errorf("sparse block size %d is invalid", blk)
	}
	if totalBlocks*blk > maxBytes {
		return 0, fmt.Errorf("sparse image of %d bytes does not fit %d bytes", totalBlocks*blk, maxBytes)
	}
	if _, err := br.Discard(fileHdr - sparseHeaderLen); err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	var block int64
	for i := uint32(0); i < chunks; i++ {
		var ch [chunkHeaderLen]byte
		if _, err := io.ReadFull(br, ch[:]); err != nil {
			return 0, fmt.Errorf("chunk %d header: %w", i, err)
		}
		if _, err := br.Discard(chunkHdr - chunkHeaderLen); err != nil {
			return 0, err
		}
		typ, n, totalSz := le.Uint16(ch[0:]), int64(le.Uint32(ch[4:])), int64(le.Uint32(ch[8:]))
		dataLen := totalSz - int64(chunkHdr)
		if block+n > totalBlocks {
			return 0, fmt.Errorf("chunk %d runs past the image's %d blocks", i, totalBlocks)
		}
		switch typ {
		case ChunkRaw:
			if dataLen != n*blk {
				return 0, fmt.Errorf("raw chunk %d: %d bytes for %d blocks", i, dataLen, n)
			}
			for off := int64(0); off < dataLen; {
				m := min(int64(len(buf)), dataLen-off)
				if _, err := io.ReadFull(br, buf[:m]); err != nil {
					return 0, fmt.Errorf("raw chunk %d: %w", i, err)
				}
				if _, err := w.WriteAt(buf[:m], block*blk+off); err != nil {
					return 0, err
				}
				off += m
			}
		case ChunkFill:
			if dataLen != 4 {
				return 0, fmt.Errorf("fill chunk %d: %d data bytes", i, dataLen)
			}
			var f [4]byte
			if _, err := io.ReadFull(br, f[:]); err != nil {
				return 0, err
			}
			pat := buf[:min(int64(len(buf)), n*blk)]
			for k := 0; k+4 <= len(pat); k += 4 {
				copy(pat[k:], f[:])
			}
			for off := int64(0); off < n*blk; off += int64(len(pat)) {
				m := min(int64(len(pat)), n*blk-off)
				if _, err := w.WriteAt(pat[:m], block*blk+off); err != nil {
					return 0, err
				}
			}
		case ChunkDontCare:
			if dataLen != 0 {
				return 0, fmt.Errorf("don't-care chunk %d carries data", i)
			}
		case ChunkCRC32:
			if dataLen != 4 {
				return 0, fmt.Errorf("crc chunk %d: %d data bytes", i, dataLen)
			}
			if _, err := br.Discard(4); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("chunk %d has unknown type %#x", i, typ)
		}
		block += n
	}
	if block != totalBlocks {
		return 0, fmt.Errorf("chunks describe %d blocks, the header %d", block, totalBlocks)
	}
	return totalBlocks * blk, nil
}
