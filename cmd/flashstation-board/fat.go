//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// fatFS reads files from a FAT12, FAT16 or FAT32 file system: just enough
// for the board to read its model from the ubuntu-seed vfat as snapd does
// (systems/<label>/model). The image's 48 MiB seed is FAT16, which
// github.com/diskfs/go-diskfs (FAT32 only) cannot read.
type fatFS struct {
	r           io.ReaderAt
	bps         int64 // bytes per sector
	clusterSize int64
	fatStart    int64 // byte offset of the first FAT
	rootStart   int64 // FAT12/16: byte offset of the root directory
	rootEntries int64 // FAT12/16: its entries
	rootCluster uint32
	dataStart   int64 // byte offset of cluster 2
	bits        int   // 12, 16 or 32
	clusters    uint32
}

func openFAT(r io.ReaderAt) (*fatFS, error) {
	b := make([]byte, 512)
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("fat: boot sector: %w", err)
	}
	le := binary.LittleEndian
	bps := int64(le.Uint16(b[11:]))
	spc := int64(b[13])
	rsvd := int64(le.Uint16(b[14:]))
	nfats := int64(b[16])
	rootEnt := int64(le.Uint16(b[17:]))
	tot := int64(le.Uint16(b[19:]))
	if tot == 0 {
		tot = int64(le.Uint32(b[32:]))
	}
	fatSz := int64(le.Uint16(b[22:]))
	if fatSz == 0 {
		fatSz = int64(le.Uint32(b[36:]))
	}
	if b[510] != 0x55 || b[511] != 0xaa || bps < 512 || bps&(bps-1) != 0 || spc == 0 || nfats == 0 || fatSz == 0 {
		return nil, errors.New("fat: not a FAT boot sector")
	}
	rootSecs := (rootEnt*32 + bps - 1) / bps
	firstData := rsvd + nfats*fatSz + rootSecs
	if tot <= firstData {
		return nil, errors.New("fat: no data area")
	}
	fs := &fatFS{
		r: r, bps: bps, clusterSize: bps * spc, fatStart: rsvd * bps,
		rootStart: (rsvd + nfats*fatSz) * bps, rootEntries: rootEnt,
		dataStart: firstData * bps, clusters: uint32((tot - firstData) / spc),
	}
	switch {
	case fs.clusters < 4085:
		fs.bits = 12
	case fs.clusters < 65525:
		fs.bits = 16
	default:
		fs.bits = 32
		fs.rootCluster = le.Uint32(b[44:])
	}
	return fs, nil
}

// next is the cluster after c in its chain (ok false at the chain's end).
func (fs *fatFS) next(c uint32) (uint32, bool, error) {
	var b [4]byte
	le := binary.LittleEndian
	var v uint32
	switch fs.bits {
	case 12:
		if _, err := fs.r.ReadAt(b[:2], fs.fatStart+int64(c)+int64(c/2)); err != nil {
			return 0, false, fmt.Errorf("fat: %w", err)
		}
		v = uint32(le.Uint16(b[:]))
		if c&1 == 1 {
			v >>= 4
		}
		v &= 0xfff
		if v >= 0xff8 {
			return 0, false, nil
		}
	case 16:
		if _, err := fs.r.ReadAt(b[:2], fs.fatStart+2*int64(c)); err != nil {
			return 0, false, fmt.Errorf("fat: %w", err)
		}
		v = uint32(le.Uint16(b[:]))
		if v >= 0xfff8 {
			return 0, false, nil
		}
	default:
		if _, err := fs.r.ReadAt(b[:], fs.fatStart+4*int64(c)); err != nil {
			return 0, false, fmt.Errorf("fat: %w", err)
		}
		v = le.Uint32(b[:]) & 0x0fffffff
		if v >= 0x0ffffff8 {
			return 0, false, nil
		}
	}
	if v < 2 || v >= fs.clusters+2 {
		return 0, false, fmt.Errorf("fat: cluster %d links to %d", c, v)
	}
	return v, true, nil
}

// chain reads up to max bytes of the cluster chain from first.
func (fs *fatFS) chain(first uint32, max int64) ([]byte, error) {
	var out []byte
	for c, n := first, uint32(0); int64(len(out)) < max; n++ {
		if c < 2 || c >= fs.clusters+2 || n > fs.clusters {
			return nil, fmt.Errorf("fat: bad cluster chain at %d", c)
		}
		buf := make([]byte, fs.clusterSize)
		if _, err := fs.r.ReadAt(buf, fs.dataStart+int64(c-2)*fs.clusterSize); err != nil {
			return nil, fmt.Errorf("fat: %w", err)
		}
		out = append(out, buf...)
		next, ok, err := fs.next(c)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		c = next
	}
	if int64(len(out)) > max {
		out = out[:max]
	}
	return out, nil
}

// dirEntry is one directory entry, with its long name when it has one.
type dirEntry struct {
	short, long string
	dir         bool
	cluster     uint32
	size        uint32
}

func parseDir(data []byte) []dirEntry {
	var ents []dirEntry
	var lfn []uint16
	le := binary.LittleEndian
	for i := 0; i+32 <= len(data); i += 32 {
		e := data[i : i+32]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xe5 {
			lfn = nil
			continue
		}
		attr := e[11]
		if attr&0x3f == 0x0f { // a long-name part; they come last part first
			var part []uint16
			for _, r := range [][2]int{{1, 11}, {14, 26}, {28, 32}} {
				for j := r[0]; j < r[1]; j += 2 {
					part = append(part, le.Uint16(e[j:]))
				}
			}
			if e[0]&0x40 != 0 {
				lfn = nil
			}
			lfn = append(part, lfn...)
			continue
		}
		if attr&0x08 != 0 { // volume label
			lfn = nil
			continue
		}
		name := strings.TrimRight(string(e[0:8]), " ")
		if ext := strings.TrimRight(string(e[8:11]), " "); ext != "" {
			name += "." + ext
		}
		long := ""
		if lfn != nil {
			for j, u := range lfn {
				if u == 0 {
					lfn = lfn[:j]
					break
				}
			}
			long = string(utf16.Decode(lfn))
			lfn = nil
		}
		ents = append(ents, dirEntry{
			short: name, long: long, dir: attr&0x10 != 0,
			cluster: uint32(le.Uint16(e[20:]))<<16 | uint32(le.Uint16(e[26:])),
			size:    le.Uint32(e[28:]),
		})
	}
	return ents
}

// readFile returns the file at path ("systems/20240210/model"), of at most
// max bytes. Names match their long name, or their 8.3 name in any case.
func (fs *fatFS) readFile(path string, max int64) ([]byte, error) {
	var dir []byte
	var err error
	if fs.bits == 32 {
		dir, err = fs.chain(fs.rootCluster, 1<<20)
	} else {
		dir = make([]byte, fs.rootEntries*32)
		_, err = fs.r.ReadAt(dir, fs.rootStart)
	}
	if err != nil {
		return nil, fmt.Errorf("fat: root directory: %w", err)
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, name := range parts {
		var found *dirEntry
		for _, e := range parseDir(dir) {
			if e.long == name || strings.EqualFold(e.short, name) {
				found = &e
				break
			}
		}
		if found == nil {
			return nil, fmt.Errorf("fat: %s: no %q", path, name)
		}
		last := i == len(parts)-1
		if found.dir == last {
			return nil, fmt.Errorf("fat: %s: %q is not a %s", path, name, map[bool]string{true: "file", false: "directory"}[last])
		}
		if last {
			if int64(found.size) > max {
				return nil, fmt.Errorf("fat: %s: %d bytes, more than %d", path, found.size, max)
			}
			if found.size == 0 {
				return []byte{}, nil
			}
			return fs.chain(found.cluster, int64(found.size))
		}
		if dir, err = fs.chain(found.cluster, 1<<20); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("fat: %s: empty path", path)
}
