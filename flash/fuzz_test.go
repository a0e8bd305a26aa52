package flash_test

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/flashstation/flashstation/flash"
)

// FuzzParseBmap: never panics; an accepted bmap has ordered ranges inside
// the image whose block count matches MappedBlocksCount.
func FuzzParseBmap(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.bmap")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`<bmap version="1.2"><ImageSize>8192</ImageSize><BlockSize>4096</BlockSize><BlocksCount>2</BlocksCount><MappedBlocksCount>1</MappedBlocksCount><BlockMap><Range>1</Range></BlockMap></bmap>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := flash.ParseBmap(data)
		if err != nil {
			return
		}
		var mapped, prev int64 = 0, -1
		for _, r := range b.Ranges {
			if r.First <= prev || r.Last < r.First || r.Last >= b.BlocksCount {
				t.Fatalf("bad range %+v accepted", r)
			}
			mapped += r.Last - r.First + 1
			prev = r.Last
		}
		if mapped != b.MappedBlocks {
			t.Fatalf("mapped %d != %d", mapped, b.MappedBlocks)
		}
	})
}

// FuzzSparseRoundTrip builds an image map from the fuzz input, encodes it
// as sparse pieces of a fuzzed maximum size, applies them, and checks every
// mapped byte arrived.
func FuzzSparseRoundTrip(f *testing.F) {
	f.Add([]byte{0, 1, 0, 3, 2, 0, 5, 1}, uint32(20000))
	f.Add([]byte{1, 0, 0, 0, 9, 9}, uint32(4096*3))
	f.Fuzz(func(t *testing.T, spec []byte, maxSize uint32) {
		const blk = 4096
		if len(spec) > 64 {
			spec = spec[:64]
		}
		// Pairs of (gap, length) in blocks describe mapped chunks.
		var chunks []flash.Chunk
		var off int64
		for i := 0; i+1 < len(spec); i += 2 {
			off += int64(spec[i]%8) * blk
			n := int64(spec[i+1]%5+1) * blk
			chunks = append(chunks, flash.Chunk{Offset: off, Length: n})
			off += n
		}
		size := off + int64(len(spec)%3)*blk + int64(len(spec)%7)*100
		content := make([]byte, size)
		for _, c := range chunks {
			for i := c.Offset; i < c.Offset+c.Length; i++ {
				content[i] = byte(i*13/blk) | 1
			}
		}
		img := &flash.Prepared{Size: size, Chunks: chunks}
		for _, c := range chunks {
			img.MappedBytes += c.Length
		}
		pieces, err := flash.PlanSparse(img, int64(maxSize))
		if err != nil {
			return // too small a download buffer is refused, not mangled
		}
		disk := &memWriterAt{}
		for _, p := range pieces {
			if p.Size() > int64(maxSize) {
				t.Fatalf("piece of %d bytes over max %d", p.Size(), maxSize)
			}
			var buf bytes.Buffer
			if _, err := p.WriteTo(&buf, bytes.NewReader(content), size); err != nil {
				t.Fatal(err)
			}
			if _, err := flash.ApplySparse(&buf, disk, 1<<30); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range chunks {
			for i := c.Offset; i < c.Offset+c.Length; i++ {
				if i >= int64(len(disk.b)) || disk.b[i] != content[i] {
					t.Fatalf("byte %d lost", i)
				}
			}
		}
	})
}

// FuzzApplySparse: the decoder never panics and never writes past the
// partition, whatever a host sends.
func FuzzApplySparse(f *testing.F) {
	hdr := make([]byte, 28+12+4096)
	binary.LittleEndian.PutUint32(hdr, flash.SparseMagic)
	binary.LittleEndian.PutUint16(hdr[4:], 1)
	binary.LittleEndian.PutUint16(hdr[8:], 28)
	binary.LittleEndian.PutUint16(hdr[10:], 12)
	binary.LittleEndian.PutUint32(hdr[12:], 4096)
	binary.LittleEndian.PutUint32(hdr[16:], 1)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	binary.LittleEndian.PutUint16(hdr[28:], flash.ChunkRaw)
	binary.LittleEndian.PutUint32(hdr[32:], 1)
	binary.LittleEndian.PutUint32(hdr[36:], 12+4096)
	f.Add(hdr)
	f.Fuzz(func(t *testing.T, data []byte) {
		disk := &memWriterAt{}
		const limit = 1 << 20
		_, _ = flash.ApplySparse(bytes.NewReader(data), disk, limit)
		if len(disk.b) > limit {
			t.Fatalf("wrote %d bytes into a %d-byte partition", len(disk.b), limit)
		}
	})
}

// FuzzPrepareStream feeds any file to Prepare (the image is outside
// input): it never panics, and it accepts exactly the files that decode
// cleanly to a non-empty image, which it then holds byte for byte. The
// reference decoders read the whole stream by other means (the standard
// library's gzip; zstd's and the pure-Go xz's readers to the end).
func FuzzPrepareStream(f *testing.F) {
	defer flash.UsePureGoXz()()
	small := bytes.Repeat([]byte("flashstation\x00\x00\x01"), 700)
	for _, format := range []string{"zst", "gz", "xz"} {
		good := compressBytes(f, format, small)
		f.Add(good)
		f.Add(good[:len(good)/2])
		f.Add(append(bytes.Clone(good), "garbage"...))
		f.Add(append(bytes.Clone(good), good...))
		f.Add(compressBytes(f, format, nil))
	}
	f.Add(small)
	f.Add([]byte{})
	c, err := flash.NewCache(filepath.Join(f.TempDir(), "cache"))
	if err != nil {
		f.Fatal(err)
	}
	c.SetChunkSize(64 << 10)
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 8 << 20 // decompression bombs are not the point here
		want, ok := referenceDecode(data, limit)
		if len(want) > limit {
			return
		}
		path := filepath.Join(t.TempDir(), "image.img")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		img, err := c.Prepare(context.Background(), flash.ImageSpec{Path: path}, nil)
		switch {
		case err != nil && !errors.Is(err, flash.ErrImageRefused):
			t.Fatalf("not a refusal: %v", err)
		case err != nil && ok && len(want) > 0:
			t.Fatalf("a good stream of %d bytes refused: %v", len(want), err)
		case err == nil && (!ok || len(want) == 0):
			t.Fatalf("a bad or empty stream accepted as a %d-byte %s image", img.Size, img.Format)
		case err == nil:
			got, rerr := os.ReadFile(img.RawPath)
			if rerr != nil || !bytes.Equal(got, want) {
				t.Fatalf("prepared image differs from the stream (%v)", rerr)
			}
		}
	})
}

// referenceDecode decodes data (format by content) up to limit+1 bytes;
// ok says the whole stream decoded without error.
func referenceDecode(data []byte, limit int64) ([]byte, bool) {
	var r io.Reader
	switch flash.DetectFormat(data) {
	case flash.FormatRaw:
		return data, true
	case flash.FormatGzip:
		zr, err := stdgzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, false
		}
		r = zr
	case flash.FormatZstd:
		zr, err := zstd.NewReader(bytes.NewReader(data), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, false
		}
		defer zr.Close()
		r = zr
	case flash.FormatXz:
		xr, err := xz.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, false
		}
		r = xr
	}
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	return out, err == nil
}
