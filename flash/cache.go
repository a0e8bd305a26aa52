package flash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultChunkSize is the unit of writes and of read-back checksums.
const DefaultChunkSize = 4 << 20

// Cache holds prepared images: each image is decompressed once, keyed by
// the SHA-256 of its file, into a sparse raw file with its chunk map. It
// survives restarts; concurrent requests for one image share one
// preparation, also across processes (a lock file per image).
type Cache struct {
	dir       string
	chunkSize int64

	mu       sync.Mutex
	inFlight map[string]*flight

	preparations atomic.Int64 // images actually decompressed (tests)
}

type flight struct {
	done chan struct{}
	img  *Prepared
	err  error
}

// NewCache opens (creating) a cache directory.
func NewCache(dir string) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	return &Cache{dir: dir, chunkSize: DefaultChunkSize, inFlight: map[string]*flight{}}, nil
}

// Dir is the cache directory.
func (c *Cache) Dir() string { return c.dir }

// ImageSpec names an image to prepare.
type ImageSpec struct {
	Path string
	Bmap string // optional bmap file
	// SHA256 is the expected hash of the image file as given (lowercase
	// hex); a mismatch refuses the image.
	SHA256 string
}

// PrepareProgress reports a preparation's progress.
type PrepareProgress struct {
	Stage string // "hash" (checking the file) or "decompress"
	Done  int64  // bytes of the file hashed, or raw bytes produced
	Total int64  // file size for "hash"; raw size when known, else 0
}

// Prepare returns the prepared image for spec, preparing it if the cache
// does not hold it yet. A wrong hash, a corrupt stream or a bmap that does
// not match is an ErrImageRefused error: no board is touched with it.
func (c *Cache) Prepare(ctx context.Context, spec ImageSpec, progress func(PrepareProgress)) (*Prepared, error) {
	if progress == nil {
		progress = func(PrepareProgress) {}
	}
	sum, err := c.sourceHash(ctx, spec.Path, progress)
	if err != nil {
		return nil, err
	}
	if spec.SHA256 != "" && !strings.EqualFold(spec.SHA256, sum) {
		return nil, fmt.Errorf("%w: %s has SHA-256 %s, the line expects %s (wrong or damaged file)",
			ErrImageRefused, spec.Path, sum, strings.ToLower(spec.SHA256))
	}
	var bm *Bmap
	var bmapSum string
	key := sum + "-c" + strconv.FormatInt(c.chunkSize>>10, 10) + "k"
	if spec.Bmap != "" {
		data, err := os.ReadFile(spec.Bmap)
		if err != nil {
			return nil, fmt.Errorf("bmap: %w", err)
		}
		if bm, err = ParseBmap(data); err != nil {
			return nil, fmt.Errorf("%w: bmap %s: %v", ErrImageRefused, spec.Bmap, err)
		}
		h := sha256.Sum256(data)
		bmapSum = hex.EncodeToString(h[:])
		key += "-bmap" + bmapSum[:16]
	}

	c.mu.Lock()
	if f, ok := c.inFlight[key]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.img, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	c.inFlight[key] = f
	c.mu.Unlock()

	f.img, f.err = c.prepareLocked(ctx, key, sum, spec, bm, bmapSum, progress)
	close(f.done)
	c.mu.Lock()
	delete(c.inFlight, key)
	c.mu.Unlock()
	return f.img, f.err
}

// prepareLocked prepares under the image's lock file, so that another
// station process preparing the same image is waited for.
func (c *Cache) prepareLocked(ctx context.Context, key, sum string, spec ImageSpec, bm *Bmap, bmapSum string, progress func(PrepareProgress)) (*Prepared, error) {
	dir := filepath.Join(c.dir, key)
	if img, err := c.load(dir); err == nil {
		return img, nil
	}
	lock, err := os.OpenFile(filepath.Join(c.dir, key+".lock"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("image cache lock: %w", err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	if img, err := c.load(dir); err == nil {
		return img, nil // another process prepared it meanwhile
	}
	_ = os.RemoveAll(dir)
	return c.prepare(ctx, dir, key, sum, spec, bm, bmapSum, progress)
}

func (c *Cache) prepare(ctx context.Context, dir, key, sum string, spec ImageSpec, bm *Bmap, bmapSum string, progress func(PrepareProgress)) (img *Prepared, err error) {
	start := time.Now()
	c.preparations.Add(1)
	tmp, err := os.MkdirTemp(c.dir, key+".tmp-")
	if err != nil {
		return nil, c.diskErr(err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if bm != nil {
		if err := c.checkSpace(bm.MappedBlocks * bm.BlockSize); err != nil {
			return nil, err
		}
	}
	src, format, err := openImage(spec.Path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var raw io.Reader
	var closeRaw func() error
	if format == FormatRaw {
		fi, err := src.Stat()
		if err != nil {
			return nil, err
		}
		raw, closeRaw = &sparseReader{f: src, segs: dataSegments(src, fi.Size()), size: fi.Size()}, func() error { return nil }
	} else {
		raw, closeRaw, err = decompressor(ctx, format, src)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrImageRefused, err)
		}
	}
	out, err := os.OpenFile(filepath.Join(tmp, "image.raw"), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o640)
	if err != nil {
		closeRaw()
		return nil, c.diskErr(err)
	}
	defer out.Close()
	var total int64
	if bm != nil {
		total = bm.ImageSize
	}
	p := &preparer{out: out, chunkSize: c.chunkSize, bmap: bm, progress: func(done int64) {
		progress(PrepareProgress{Stage: "decompress", Done: done, Total: total})
	}}
	size, err := p.run(ctx, raw)
	if cerr := closeRaw(); cerr != nil && err == nil {
		err = fmt.Errorf("%w: %v", ErrImageRefused, cerr)
	}
	if err != nil {
		return nil, c.diskErr(err)
	}
	if err := out.Sync(); err != nil {
		return nil, c.diskErr(err)
	}
	img = &Prepared{
		Key: key, Source: spec.Path, SourceSHA256: sum, Format: format, Size: size, BlockSize: zeroBlock,
		ChunkSize: c.chunkSize, MappedBytes: p.mapped, Chunks: p.chunks, PreparedAt: time.Now().UTC(),
		PrepareTime: time.Since(start).Seconds(),
	}
	if bm != nil {
		img.BlockSize = bm.BlockSize
		img.Bmap = &BmapInfo{Path: spec.Bmap, SHA256: bmapSum, Version: bm.Version}
	}
	manifest, _ := json.MarshalIndent(img, "", "  ")
	if err := writeFileSync(filepath.Join(tmp, "manifest.json"), manifest); err != nil {
		return nil, c.diskErr(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, c.diskErr(err)
	}
	syncDir(c.dir)
	img.RawPath = filepath.Join(dir, "image.raw")
	return img, nil
}

// load reads a prepared image's manifest and checks its raw file is whole.
func (c *Cache) load(dir string) (*Prepared, error) {
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	var img Prepared
	if err := json.Unmarshal(data, &img); err != nil {
		return nil, err
	}
	img.RawPath = filepath.Join(dir, "image.raw")
	img.Cached = true
	fi, err := os.Stat(img.RawPath)
	if err != nil || fi.Size() != img.Size {
		return nil, fmt.Errorf("prepared image %s is incomplete", dir)
	}
	return &img, nil
}

// hashIndex remembers file hashes by identity (device, inode, size,
// mtime), so a restart does not re-read a large image to find it.
type hashIndexEntry struct {
	Dev, Ino uint64
	Size     int64
	MtimeNs  int64
	SHA256   string
}

func (c *Cache) indexPath(fi os.FileInfo) (string, hashIndexEntry, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", hashIndexEntry{}, false
	}
	e := hashIndexEntry{Dev: uint64(st.Dev), Ino: st.Ino, Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
	name := fmt.Sprintf("%x-%x-%x-%x.json", e.Dev, e.Ino, e.Size, e.MtimeNs)
	return filepath.Join(c.dir, "index", name), e, true
}

// sourceHash returns the SHA-256 of the image file.
func (c *Cache) sourceHash(ctx context.Context, path string, progress func(PrepareProgress)) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("image %s is not a regular file", path)
	}
	idx, entry, ok := c.indexPath(fi)
	if ok {
		if data, err := os.ReadFile(idx); err == nil {
			var known hashIndexEntry
			if json.Unmarshal(data, &known) == nil && known == (hashIndexEntry{entry.Dev, entry.Ino, entry.Size, entry.MtimeNs, known.SHA256}) && known.SHA256 != "" {
				return known.SHA256, nil
			}
		}
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var done int64
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		done += int64(n)
		progress(PrepareProgress{Stage: "hash", Done: done, Total: fi.Size()})
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("read image: %w", err)
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if ok {
		entry.SHA256 = sum
		if data, err := json.Marshal(entry); err == nil {
			_ = os.MkdirAll(filepath.Dir(idx), 0o750)
			_ = os.WriteFile(idx, data, 0o640)
		}
	}
	return sum, nil
}

// checkSpace refuses to start a preparation that cannot fit.
func (c *Cache) checkSpace(need int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(c.dir, &st); err != nil {
		return nil
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if need > free {
		return fmt.Errorf("image cache %s: disk full: the image needs %s, %s free", c.dir, HumanBytes(need), HumanBytes(free))
	}
	return nil
}

// diskErr turns "no space left" into a clear message.
func (c *Cache) diskErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("image cache %s: disk full while preparing the image (free space and retry): %w", c.dir, err)
	}
	return err
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// HumanBytes formats a byte count in binary units.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
