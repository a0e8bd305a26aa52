package flash_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/flashstation/flashstation/flash"
)

// streamContent is the image of the stream tests: mostly random bytes,
// which the compressors store as they are, so that a byte flipped in the
// middle of the file changes the content and only the stream's checksum
// can tell; patterned data, a zero gap, and a partial last block.
func streamContent() []byte {
	const size = 2<<20 + 256<<10 + 1000
	b := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 64<<10; i++ {
		b[i] = byte(i%251) | 1
	}
	for i := 64 << 10; i < 1<<20+64<<10; i++ {
		b[i] = byte(rng.Uint32())
	}
	for i := 2 << 20; i < size; i++ {
		b[i] = byte(i/4096*7+i%13) | 1
	}
	return b
}

// compressBytes compresses data as format (zst, gz, xz) the way images
// are made: zstd and xz with their content checksums (xz by the system's
// xz when there is one).
func compressBytes(t testing.TB, format string, data []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	switch format {
	case "zst":
		w, err := zstd.NewWriter(&out, zstd.WithEncoderCRC(true))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case "gz":
		w := gzip.NewWriter(&out)
		w.Write(data)
		w.Close()
	case "xz":
		if path, err := exec.LookPath("xz"); err == nil {
			cmd := exec.Command(path, "-T1", "-0", "-c")
			cmd.Stdin = bytes.NewReader(data)
			cmd.Stdout = &out
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
			break
		}
		w, err := xz.WriterConfig{CheckSum: xz.CRC64}.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	default:
		t.Fatalf("format %s", format)
	}
	return out.Bytes()
}

// checksumByte is the offset of a byte of the content checksum in a
// one-stream file of format: gzip's CRC-32, zstd's frame checksum, the
// CRC-64 of xz's last block (found from the stream footer).
func checksumByte(t testing.TB, format string, good []byte) int {
	t.Helper()
	switch format {
	case "gz":
		return len(good) - 8
	case "zst":
		// Frame header descriptor: Content_Checksum_flag is bit 2.
		if good[4]&0x04 == 0 {
			t.Fatal("zstd frame without a content checksum")
		}
		return len(good) - 1
	case "xz":
		// Stream flags: check type 4 is CRC-64 (8 bytes before the index).
		if good[7] != 0x04 {
			t.Fatalf("xz check type %d, want CRC-64", good[7])
		}
		footer := good[len(good)-12:]
		index := len(good) - 12 - (int(binary.LittleEndian.Uint32(footer[4:8]))+1)*4
		return index - 1
	}
	t.Fatalf("format %s", format)
	return 0
}

// streamDecoders are the decoders an image can go through: every format,
// .xz both through the system's xz and through the pure-Go fallback.
var streamDecoders = []struct {
	name, format string
	pureGo       bool
}{
	{"zstd", "zst", false},
	{"gzip", "gz", false},
	{"xz system", "xz", false},
	{"xz pure Go", "xz", true},
}

// useDecoder selects the decoder for a test, skipping the system xz when
// the machine has none (it would silently test the fallback twice).
func useDecoder(t *testing.T, format string, pureGo bool) {
	t.Helper()
	if format != "xz" {
		return
	}
	if pureGo {
		t.Cleanup(flash.UsePureGoXz())
		return
	}
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz not installed (apt-get install xz-utils)")
	}
}

// specVariants: refusing a damaged stream must not depend on the line
// giving a hash (which the damaged file can match: it was hashed after
// the damage) or a bmap (one without checksums checks only the size).
var specVariants = []struct {
	name string
	spec func(t *testing.T, path string, content []byte) flash.ImageSpec
}{
	{"no bmap or sha256", func(t *testing.T, path string, _ []byte) flash.ImageSpec {
		return flash.ImageSpec{Path: path}
	}},
	{"sha256 of the file", func(t *testing.T, path string, _ []byte) flash.ImageSpec {
		sum := sha256.Sum256(fileBytes(t, path))
		return flash.ImageSpec{Path: path, SHA256: hex.EncodeToString(sum[:])}
	}},
	{"bmap without checksums", func(t *testing.T, path string, content []byte) flash.ImageSpec {
		bm := filepath.Join(t.TempDir(), "image.bmap")
		if err := os.WriteFile(bm, []byte(bmapV13(content, "1.2", false)), 0o644); err != nil {
			t.Fatal(err)
		}
		return flash.ImageSpec{Path: path, Bmap: bm}
	}},
}

// noPreparedImage fails when the cache holds a prepared (or half-prepared)
// image.
func noPreparedImage(t *testing.T, c *flash.Cache) {
	t.Helper()
	filepath.WalkDir(c.Dir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Name() == "image.raw" || d.Name() == "manifest.json" || strings.Contains(d.Name(), ".tmp-") {
			t.Errorf("the cache kept %s", path)
		}
		return nil
	})
}

// TestDamagedStreamsRefused: a cut, corrupt or padded-with-garbage stream,
// an empty file and an empty stream are refused (image-refused) by every
// decoder, with or without the line's hash or bmap; nothing is cached, so
// asking again prepares again and is refused again.
func TestDamagedStreamsRefused(t *testing.T) {
	content := streamContent()
	for _, dec := range streamDecoders {
		t.Run(dec.name, func(t *testing.T) {
			useDecoder(t, dec.format, dec.pureGo)
			good := compressBytes(t, dec.format, content)
			for _, dmg := range []struct {
				name   string
				damage func(t *testing.T) []byte
			}{
				{"cut in the middle", func(t *testing.T) []byte { return good[:len(good)/2] }},
				{"last byte missing", func(t *testing.T) []byte { return good[:len(good)-1] }},
				{"header only", func(t *testing.T) []byte { return good[:12] }},
				{"bytes flipped in the middle", func(t *testing.T) []byte {
					b := bytes.Clone(good)
					for i := len(b) / 2; i < len(b)/2+16; i++ {
						b[i] ^= 0x55
					}
					return b
				}},
				{"one content byte flipped", func(t *testing.T) []byte {
					b := bytes.Clone(good)
					b[len(b)/2] ^= 0x01
					return b
				}},
				{"checksum damaged", func(t *testing.T) []byte {
					b := bytes.Clone(good)
					b[checksumByte(t, dec.format, good)] ^= 0x01
					return b
				}},
				{"trailing garbage", func(t *testing.T) []byte { return append(bytes.Clone(good), "not part of the image\n"...) }},
				{"second stream cut", func(t *testing.T) []byte { return append(bytes.Clone(good), good[:len(good)/2]...) }},
				{"empty file", func(t *testing.T) []byte { return nil }},
				{"empty stream", func(t *testing.T) []byte { return compressBytes(t, dec.format, nil) }},
			} {
				t.Run(dmg.name, func(t *testing.T) {
					path := filepath.Join(t.TempDir(), "image.img")
					if err := os.WriteFile(path, dmg.damage(t), 0o644); err != nil {
						t.Fatal(err)
					}
					for _, v := range specVariants {
						t.Run(v.name, func(t *testing.T) {
							c := newCache(t)
							spec := v.spec(t, path, content)
							for try := 1; try <= 2; try++ {
								img, err := c.Prepare(context.Background(), spec, nil)
								if !errors.Is(err, flash.ErrImageRefused) {
									t.Fatalf("try %d: Prepare = %+v, %v; want %v", try, img, err, flash.ErrImageRefused)
								}
							}
							if n := c.Preparations(); n != 2 {
								t.Errorf("%d preparations for 2 tries: a refused image came from the cache", n)
							}
							noPreparedImage(t, c)
						})
					}
				})
			}
		})
	}
}

// TestGoodStreamsPrepare: whole streams still prepare to the exact image
// bytes with every decoder, also as several concatenated streams (gzip
// members, zstd frames, xz streams) and with xz's stream padding.
func TestGoodStreamsPrepare(t *testing.T) {
	content := streamContent()
	half := len(content) / 2
	for _, dec := range streamDecoders {
		t.Run(dec.name, func(t *testing.T) {
			useDecoder(t, dec.format, dec.pureGo)
			for _, file := range []struct {
				name string
				data func(t *testing.T) []byte
			}{
				{"one stream", func(t *testing.T) []byte { return compressBytes(t, dec.format, content) }},
				{"two streams", func(t *testing.T) []byte {
					return append(compressBytes(t, dec.format, content[:half]), compressBytes(t, dec.format, content[half:])...)
				}},
				{"stream padding", func(t *testing.T) []byte {
					if dec.format != "xz" {
						t.Skip("stream padding is xz's")
					}
					return append(compressBytes(t, dec.format, content), 0, 0, 0, 0)
				}},
			} {
				t.Run(file.name, func(t *testing.T) {
					path := filepath.Join(t.TempDir(), "image.img")
					if err := os.WriteFile(path, file.data(t), 0o644); err != nil {
						t.Fatal(err)
					}
					for _, v := range specVariants {
						t.Run(v.name, func(t *testing.T) {
							c := newCache(t)
							img := prepare(t, c, v.spec(t, path, content))
							if img.Size != int64(len(content)) {
								t.Fatalf("size %d, want %d", img.Size, len(content))
							}
							if i := firstDiff(fileBytes(t, img.RawPath), content); i >= 0 {
								t.Fatalf("prepared image differs at byte %d", i)
							}
							if again := prepare(t, c, v.spec(t, path, content)); !again.Cached || c.Preparations() != 1 {
								t.Errorf("second Prepare: cached %v, %d preparations", again.Cached, c.Preparations())
							}
						})
					}
				})
			}
		})
	}
}

// TestSystemXzStatusAndStderr: the system xz's verdict counts, not just
// its output: a non-zero exit or anything on stderr refuses the image even
// when the output is the whole image.
func TestSystemXzStatusAndStderr(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh for the fake xz")
	}
	content := streamContent()
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw.img")
	if err := os.WriteFile(raw, content, 0o644); err != nil {
		t.Fatal(err)
	}
	// Any file starting with xz's magic goes to the xz command.
	image := filepath.Join(dir, "image.img")
	if err := os.WriteFile(image, []byte("\xfd7zXZ\x00 whatever the fake xz is fed"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, script string
		refused      bool
		want         string
	}{
		{"exit 0, quiet", "exit 0", false, ""},
		{"exit 1, quiet", "exit 1", true, "exit status 1"},
		{"exit 1 with a message", "echo 'xz: (stdin): Compressed data is corrupt' >&2; exit 1", true, "Compressed data is corrupt"},
		{"exit 0 with a message", "echo 'xz: (stdin): something is off' >&2; exit 0", true, "something is off"},
		{"killed", "kill -9 $$", true, "killed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := filepath.Join(t.TempDir(), "xz")
			script := "#!/bin/sh\ncat >/dev/null\ncat '" + raw + "'\n" + tc.script + "\n"
			if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			defer flash.UseXzCommand(fake)()
			c := newCache(t)
			img, err := c.Prepare(context.Background(), flash.ImageSpec{Path: image}, nil)
			if !tc.refused {
				if err != nil {
					t.Fatalf("a clean xz run refused: %v", err)
				}
				if i := firstDiff(fileBytes(t, img.RawPath), content); i >= 0 {
					t.Fatalf("prepared image differs at byte %d", i)
				}
				return
			}
			if !errors.Is(err, flash.ErrImageRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Prepare = %v, want %v with %q", err, flash.ErrImageRefused, tc.want)
			}
			noPreparedImage(t, c)
		})
	}
}

// TestBmapRangeAcrossChunks: a bmap range longer than a chunk (the cache
// reads the image a chunk at a time) is mapped and cached whole, with or
// without checksums.
func TestBmapRangeAcrossChunks(t *testing.T) {
	content := make([]byte, 3<<20+8192) // one range over four 1 MiB windows
	for i := range content {
		content[i] = byte(i*31 + 1)
	}
	src := filepath.Join(t.TempDir(), "image.raw")
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, checksums := range []bool{false, true} {
		t.Run(fmt.Sprintf("checksums=%v", checksums), func(t *testing.T) {
			doc, err := flash.EncodeBmap(bytes.NewReader(content), int64(len(content)), 4096, [][2]int64{{0, int64(len(content))}})
			if err != nil {
				t.Fatal(err)
			}
			if !checksums { // bmap 1.2: no checksums at all
				blocks := (len(content) + 4095) / 4096
				doc = fmt.Appendf(nil, `<?xml version="1.0" ?>
<bmap version="1.2">
<ImageSize> %d </ImageSize>
<BlockSize> 4096 </BlockSize>
<BlocksCount> %d </BlocksCount>
<MappedBlocksCount> %d </MappedBlocksCount>
<BlockMap>
<Range> 0-%d </Range>
</BlockMap>
</bmap>
`, len(content), blocks, blocks, blocks-1)
			}
			if n := bytes.Count(doc, []byte("<Range")); n != 1 {
				t.Fatalf("the bmap has %d ranges, want 1:\n%s", n, doc)
			}
			bm := filepath.Join(t.TempDir(), "image.bmap")
			if err := os.WriteFile(bm, doc, 0o644); err != nil {
				t.Fatal(err)
			}
			img := prepare(t, newCache(t), flash.ImageSpec{Path: src, Bmap: bm})
			checkCovers(t, img, content)
			if img.MappedBytes != int64(len(content)) {
				t.Errorf("mapped %d bytes, want %d", img.MappedBytes, len(content))
			}
			if got := fileBytes(t, img.RawPath); !bytes.Equal(got, content) {
				t.Errorf("the cache differs from the image at byte %d", firstDiff(got, content))
			}
		})
	}
}
