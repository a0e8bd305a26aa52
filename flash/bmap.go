package flash

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// maxBmapSize bounds a bmap file (a 64 GiB image with every other block
// mapped would still be far below).
const maxBmapSize = 64 << 20

// Bmap is a parsed block map: the mapped block ranges of an image and,
// from version 1.3 on, their checksums.
type Bmap struct {
	Version      string
	ImageSize    int64
	BlockSize    int64
	BlocksCount  int64
	MappedBlocks int64
	ChecksumType string // "sha256", "sha1", or "" (versions before 1.3)
	Ranges       []BmapRange
}

// BmapRange is an inclusive range of blocks and its checksum (hex, may be
// empty).
type BmapRange struct {
	First, Last int64
	Checksum    string
}

// Offset and Length give a range in bytes, clipped to the image size.
func (b *Bmap) byteRange(r BmapRange) (off, length int64) {
	off = r.First * b.BlockSize
	end := min((r.Last+1)*b.BlockSize, b.ImageSize)
	return off, end - off
}

// newHash returns the bmap's checksum function.
func (b *Bmap) newHash() hash.Hash {
	switch b.ChecksumType {
	case "sha256":
		return sha256.New()
	case "sha1":
		return sha1.New()
	}
	return nil
}

type bmapXML struct {
	XMLName           xml.Name `xml:"bmap"`
	Version           string   `xml:"version,attr"`
	ImageSize         string   `xml:"ImageSize"`
	BlockSize         string   `xml:"BlockSize"`
	BlocksCount       string   `xml:"BlocksCount"`
	MappedBlocksCount string   `xml:"MappedBlocksCount"`
	ChecksumType      string   `xml:"ChecksumType"`
	BmapFileChecksum  string   `xml:"BmapFileChecksum"`
	BmapFileSHA1      string   `xml:"BmapFileSHA1"`
	Ranges            []struct {
		Chksum string `xml:"chksum,attr"`
		SHA1   string `xml:"sha1,attr"`
		Text   string `xml:",chardata"`
	} `xml:"BlockMap>Range"`
}

// ReadBmap reads and checks a bmap file.
func ReadBmap(path string) (*Bmap, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("bmap: %w", err)
	}
	if fi.Size() > maxBmapSize {
		return nil, fmt.Errorf("bmap %s: larger than %d MiB", path, maxBmapSize>>20)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bmap: %w", err)
	}
	b, err := ParseBmap(data)
	if err != nil {
		return nil, fmt.Errorf("bmap %s: %w", path, err)
	}
	return b, nil
}

// ParseBmap parses a bmap file (format versions 1.x and 2.0), checking its
// own checksum, its counts and that its ranges are ordered and inside the
// image.
func ParseBmap(data []byte) (*Bmap, error) {
	var x bmapXML
	if err := xml.Unmarshal(data, &x); err != nil {
		return nil, fmt.Errorf("not a bmap file: %w", err)
	}
	major, minor, ok := parseVersion(x.Version)
	if !ok {
		return nil, fmt.Errorf("unknown bmap version %q", x.Version)
	}
	if major > 2 {
		return nil, fmt.Errorf("bmap version %s is newer than this flashstation supports (2.0)", x.Version)
	}
	b := &Bmap{Version: x.Version}
	for _, f := range []struct {
		name string
		text string
		dst  *int64
	}{
		{"ImageSize", x.ImageSize, &b.ImageSize},
		{"BlockSize", x.BlockSize, &b.BlockSize},
		{"BlocksCount", x.BlocksCount, &b.BlocksCount},
		{"MappedBlocksCount", x.MappedBlocksCount, &b.MappedBlocks},
	} {
		v, err := strconv.ParseInt(strings.TrimSpace(f.text), 10, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%s %q is not a count", f.name, strings.TrimSpace(f.text))
		}
		*f.dst = v
	}
	if b.BlockSize <= 0 || b.BlockSize%512 != 0 || b.BlockSize > 1<<20 {
		return nil, fmt.Errorf("block size %d is not a multiple of 512 up to 1 MiB", b.BlockSize)
	}
	if want := (b.ImageSize + b.BlockSize - 1) / b.BlockSize; b.BlocksCount != want {
		return nil, fmt.Errorf("inconsistent bmap: image size %d is %d blocks, not %d", b.ImageSize, want, b.BlocksCount)
	}

	var fileSum, rangeAttr string
	switch {
	case major > 1 || (major == 1 && minor >= 4):
		b.ChecksumType = strings.TrimSpace(x.ChecksumType)
		fileSum = strings.TrimSpace(x.BmapFileChecksum)
		rangeAttr = "chksum"
	case minor == 3:
		b.ChecksumType = "sha1"
		fileSum = strings.TrimSpace(x.BmapFileSHA1)
		rangeAttr = "sha1"
	}
	if b.ChecksumType != "" && b.newHash() == nil {
		return nil, fmt.Errorf("unsupported checksum type %q", b.ChecksumType)
	}
	if b.ChecksumType != "" {
		if err := checkBmapFileChecksum(data, fileSum, b.newHash()); err != nil {
			return nil, err
		}
	}

	var mapped, prevLast int64 = 0, -1
	for i, r := range x.Ranges {
		text := strings.TrimSpace(r.Text)
		first, last, err := parseBlockRange(text)
		if err != nil {
			return nil, fmt.Errorf("range %d %q: %w", i+1, text, err)
		}
		if first <= prevLast {
			return nil, fmt.Errorf("range %d %q overlaps or is out of order", i+1, text)
		}
		if last >= b.BlocksCount {
			return nil, fmt.Errorf("range %d %q is beyond the image's %d blocks", i+1, text, b.BlocksCount)
		}
		sum := r.Chksum
		if rangeAttr == "sha1" {
			sum = r.SHA1
		}
		sum = strings.ToLower(strings.TrimSpace(sum))
		if b.ChecksumType != "" {
			if _, err := hex.DecodeString(sum); err != nil || len(sum) != 2*b.newHash().Size() {
				return nil, fmt.Errorf("range %d %q: checksum %q is not a %s", i+1, text, sum, b.ChecksumType)
			}
		}
		b.Ranges = append(b.Ranges, BmapRange{First: first, Last: last, Checksum: sum})
		mapped += last - first + 1
		prevLast = last
	}
	if mapped != b.MappedBlocks {
		return nil, fmt.Errorf("inconsistent bmap: ranges map %d blocks, MappedBlocksCount says %d", mapped, b.MappedBlocks)
	}
	return b, nil
}

func parseVersion(v string) (major, minor int, ok bool) {
	a, bs, found := strings.Cut(strings.TrimSpace(v), ".")
	if !found {
		return 0, 0, false
	}
	ma, err1 := strconv.Atoi(a)
	mi, err2 := strconv.Atoi(bs)
	return ma, mi, err1 == nil && err2 == nil && ma >= 1 && mi >= 0
}

func parseBlockRange(s string) (first, last int64, err error) {
	a, b, isRange := strings.Cut(s, "-")
	first, err = strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	if err != nil || first < 0 {
		return 0, 0, fmt.Errorf("not a block number")
	}
	last = first
	if isRange {
		last, err = strconv.ParseInt(strings.TrimSpace(b), 10, 64)
		if err != nil || last < first {
			return 0, 0, fmt.Errorf("not a block range")
		}
	}
	return first, last, nil
}

// checkBmapFileChecksum checks the bmap's own checksum: the hash of the
// file with the checksum's digits replaced by '0'.
func checkBmapFileChecksum(data []byte, sum string, h hash.Hash) error {
	if sum == "" {
		return fmt.Errorf("bmap file checksum missing")
	}
	i := bytes.Index(data, []byte(sum))
	if i < 0 {
		return fmt.Errorf("bmap file checksum not found in the file")
	}
	zeroed := append([]byte(nil), data...)
	copy(zeroed[i:], bytes.Repeat([]byte("0"), len(sum)))
	h.Write(zeroed)
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(sum) {
		return fmt.Errorf("bmap file is corrupt: its checksum is %s, the file says %s", got, sum)
	}
	return nil
}

// EncodeBmap writes the bmap (format 2.0, SHA-256 checksums, as
// bmaptool create writes it) of an image of size bytes whose data lies in
// extents: byte ranges {offset, length}, in any order, overlapping or not,
// rounded out to whole blocks. Blocks outside them are holes: a flash
// skips them.
func EncodeBmap(img io.ReaderAt, size, blockSize int64, extents [][2]int64) ([]byte, error) {
	if blockSize <= 0 || blockSize%512 != 0 || blockSize > 1<<20 {
		return nil, fmt.Errorf("bmap: block size %d is not a multiple of 512 up to 1 MiB", blockSize)
	}
	blocks := (size + blockSize - 1) / blockSize
	var spans [][2]int64 // inclusive block ranges
	for _, e := range extents {
		if e[0] < 0 || e[1] < 0 || e[0]+e[1] > size {
			return nil, fmt.Errorf("bmap: extent %d+%d is outside the image's %d bytes", e[0], e[1], size)
		}
		if e[1] > 0 {
			spans = append(spans, [2]int64{e[0] / blockSize, (e[0] + e[1] - 1) / blockSize})
		}
	}
	slices.SortFunc(spans, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
	var ranges []BmapRange
	for _, s := range spans {
		if n := len(ranges); n > 0 && s[0] <= ranges[n-1].Last+1 {
			ranges[n-1].Last = max(ranges[n-1].Last, s[1])
			continue
		}
		ranges = append(ranges, BmapRange{First: s[0], Last: s[1]})
	}
	b := &Bmap{Version: "2.0", ImageSize: size, BlockSize: blockSize, BlocksCount: blocks, ChecksumType: "sha256"}
	buf := make([]byte, 1<<20)
	for i := range ranges {
		off, n := b.byteRange(ranges[i])
		h := sha256.New()
		if _, err := io.CopyBuffer(h, io.NewSectionReader(img, off, n), buf); err != nil {
			return nil, fmt.Errorf("bmap: reading the image: %w", err)
		}
		ranges[i].Checksum = hex.EncodeToString(h.Sum(nil))
		b.MappedBlocks += ranges[i].Last - ranges[i].First + 1
	}
	var out bytes.Buffer
	zeros := strings.Repeat("0", 2*sha256.Size)
	fmt.Fprintf(&out, "<?xml version=\"1.0\" ?>\n<bmap version=\"%s\">\n", b.Version)
	fmt.Fprintf(&out, "    <ImageSize> %d </ImageSize>\n    <BlockSize> %d </BlockSize>\n", b.ImageSize, b.BlockSize)
	fmt.Fprintf(&out, "    <BlocksCount> %d </BlocksCount>\n    <MappedBlocksCount> %d </MappedBlocksCount>\n", b.BlocksCount, b.MappedBlocks)
	fmt.Fprintf(&out, "    <ChecksumType> %s </ChecksumType>\n    <BmapFileChecksum> %s </BmapFileChecksum>\n", b.ChecksumType, zeros)
	out.WriteString("    <BlockMap>\n")
	for _, r := range ranges {
		span := strconv.FormatInt(r.First, 10)
		if r.Last != r.First {
			span += "-" + strconv.FormatInt(r.Last, 10)
		}
		fmt.Fprintf(&out, "        <Range chksum=\"%s\"> %s </Range>\n", r.Checksum, span)
	}
	out.WriteString("    </BlockMap>\n</bmap>\n")
	data := out.Bytes()
	sum := sha256.Sum256(data)
	i := bytes.Index(data, []byte(zeros))
	copy(data[i:], hex.EncodeToString(sum[:]))
	return data, nil
}
