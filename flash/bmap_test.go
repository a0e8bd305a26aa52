package flash_test

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
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
