package flash_test

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/flash"
)

// bmapV13 writes a version 1.3 bmap (SHA-1 checksums) for content's
// non-zero 4 KiB blocks.
func bmapV13(content []byte, version string, withSums bool) string {
	const blk = 4096
	blocks := (int64(len(content)) + blk - 1) / blk
	var ranges strings.Builder
	mapped := int64(0)
	for b := int64(0); b < blocks; b++ {
		end := min((b+1)*blk, int64(len(content)))
		zero := true
		for _, c := range content[b*blk : end] {
			if c != 0 {
				zero = false
				break
			}
		}
		if zero {
			continue
		}
		attr := ""
		if withSums {
			s := sha1.Sum(content[b*blk : end])
			attr = fmt.Sprintf(` sha1="%s"`, hex.EncodeToString(s[:]))
		}
		fmt.Fprintf(&ranges, "<Range%s> %d </Range>\n", attr, b)
		mapped++
	}
	fileSum := ""
	if withSums {
		fileSum = "<BmapFileSHA1> " + strings.Repeat("0", 40) + " </BmapFileSHA1>"
	}
	doc := fmt.Sprintf(`<?xml version="1.0" ?>
<bmap version="%s">
<ImageSize> %d </ImageSize>
<BlockSize> 4096 </BlockSize>
<BlocksCount> %d </BlocksCount>
<MappedBlocksCount> %d </MappedBlocksCount>
%s
<BlockMap>
%s</BlockMap>
</bmap>
`, version, len(content), blocks, mapped, fileSum, ranges.String())
	if withSums {
		s := sha1.Sum([]byte(doc))
		doc = strings.Replace(doc, strings.Repeat("0", 40), hex.EncodeToString(s[:]), 1)
	}
	return doc
}

func TestBmapVersions(t *testing.T) {
	content := make([]byte, 64<<10+100)
	for i := 8192; i < 20000; i++ {
		content[i] = byte(i)
	}
	content[len(content)-1] = 7
	v13, err := flash.ParseBmap([]byte(bmapV13(content, "1.3", true)))
	if err != nil {
		t.Fatal(err)
	}
	if v13.ChecksumType != "sha1" || len(v13.Ranges) != 4 || v13.Ranges[0].Checksum == "" {
		t.Errorf("1.3: %+v", v13)
	}
	v12, err := flash.ParseBmap([]byte(bmapV13(content, "1.2", false)))
	if err != nil || v12.ChecksumType != "" || len(v12.Ranges) != 4 {
		t.Errorf("1.2: %+v %v", v12, err)
	}
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"version 3", strings.Replace(bmapV13(content, "1.2", false), `version="1.2"`, `version="3.0"`, 1), "newer"},
		{"bad count", strings.Replace(bmapV13(content, "1.2", false), "<MappedBlocksCount> 4", "<MappedBlocksCount> 5", 1), "MappedBlocksCount"},
		{"blocks count", strings.Replace(bmapV13(content, "1.2", false), "<BlocksCount> 17", "<BlocksCount> 18", 1), "inconsistent"},
		{"out of order", strings.Replace(bmapV13(content, "1.2", false), "<Range> 2 </Range>", "<Range> 16 </Range><Range> 2 </Range>", 1), "order"},
		{"file checksum", strings.Replace(bmapV13(content, "1.3", true), "<BlockSize> 4096", "<BlockSize>  4096", 1), "corrupt"},
		{"not xml", "hello", "not a bmap"},
	} {
		if _, err := flash.ParseBmap([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestEncodeBmap: the bmap EncodeBmap writes round-trips through
// ParseBmap (its extents merged into ordered block ranges) and Debian's
// bmaptool copies with it, checking its checksums: mapped blocks written,
// an image changed after the bmap refused.
func TestEncodeBmap(t *testing.T) {
	const size = 3<<20 + 1000 // the last block is short
	img := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	extents := [][2]int64{{2 << 20, 8192}, {0, 1000}, {500, 5000}, {size - 700, 700}, {2<<20 + 8192, 1}}
	for _, e := range extents {
		for i := e[0]; i < e[0]+e[1]; i++ {
			img[i] = byte(rng.Uint32() | 1)
		}
	}
	data, err := flash.EncodeBmap(bytes.NewReader(img), size, 4096, extents)
	if err != nil {
		t.Fatal(err)
	}
	bm, err := flash.ParseBmap(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	var spans []string
	for _, r := range bm.Ranges {
		spans = append(spans, fmt.Sprintf("%d-%d", r.First, r.Last))
		off, end := r.First*4096, min((r.Last+1)*4096, size)
		if sum := sha256.Sum256(img[off:end]); hex.EncodeToString(sum[:]) != r.Checksum {
			t.Errorf("range %d-%d: checksum %s, the bytes hash to %x", r.First, r.Last, r.Checksum, sum)
		}
	}
	last := int64(size / 4096)
	if got, want := strings.Join(spans, " "), fmt.Sprintf("0-1 512-514 %d-%d", last, last); got != want {
		t.Errorf("ranges %s, want %s", got, want)
	}
	if bm.MappedBlocks != 6 || bm.BlocksCount != last+1 || bm.ImageSize != size {
		t.Errorf("counts: %+v", bm)
	}
	if _, err := flash.EncodeBmap(bytes.NewReader(img), size, 4096, [][2]int64{{size - 10, 11}}); err == nil {
		t.Error("an extent past the image's end was accepted")
	}

	if _, err := exec.LookPath("bmaptool"); err != nil {
		t.Skip("bmaptool not installed (apt-get install bmap-tools): its half of the test needs it")
	}
	dir := t.TempDir()
	imgPath, bmapPath, target := filepath.Join(dir, "img"), filepath.Join(dir, "img.bmap"), filepath.Join(dir, "target")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(imgPath, img, 0o644))
	must(os.WriteFile(bmapPath, data, 0o644))
	must(os.WriteFile(target, bytes.Repeat([]byte{0xee}, size), 0o644))
	if out, err := exec.Command("bmaptool", "copy", "--bmap", bmapPath, imgPath, target).CombinedOutput(); err != nil {
		t.Fatalf("bmaptool copy refuses our bmap: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(target)
	for _, r := range bm.Ranges {
		off, end := r.First*4096, min((r.Last+1)*4096, size)
		if !bytes.Equal(got[off:end], img[off:end]) {
			t.Errorf("bmaptool: range %d-%d not copied", r.First, r.Last)
		}
	}
	img[2<<20+100] ^= 0x40
	must(os.WriteFile(imgPath, img, 0o644))
	if out, err := exec.Command("bmaptool", "copy", "--bmap", bmapPath, imgPath, target).CombinedOutput(); err == nil || !strings.Contains(string(out), "checksum mismatch") {
		t.Errorf("bmaptool copy of an image changed after its bmap: %v\n%s", err, out)
	}
}
