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
	"slices"
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

// Cache holds prepared images: each image is decompressed once into a
// sparse raw file with its chunk map, keyed by the identity of its file
// (device, inode, size, modification and change times) and its bmap, so
// a raw image's holes are never read to find it. It survives restarts;
// concurrent requests for one image share one preparation, also across
// processes (a lock file per image), and in this process the targets of
// a first flash stream it (Open) as it is prepared.
type Cache struct {
	dir       string
	chunkSize int64

	mu       sync.Mutex
	inFlight map[string]*Prepared // filling

	preparations atomic.Int64 // images actually decompressed (tests)
}

// NewCache opens (creating) a cache directory.
func NewCache(dir string) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	c := &Cache{dir: dir, chunkSize: DefaultChunkSize, inFlight: map[string]*Prepared{}}
	c.removeLeftovers()
	return c, nil
}

// removeLeftovers removes what preparations killed midway left (their
// tmp directories), unless one still runs in another process.
func (c *Cache) removeLeftovers() {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		key, _, ok := strings.Cut(e.Name(), ".tmp-")
		if !ok || !e.IsDir() {
			continue
		}
		c.removeUnlocked(key, e.Name())
	}
}

// removeUnlocked removes the cache entry name unless key's lock is held
// (its image being prepared or rewritten, here or in another process).
func (c *Cache) removeUnlocked(key, name string) {
	lock, err := os.OpenFile(filepath.Join(c.dir, key+".lock"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return
	}
	defer lock.Close()
	if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		_ = os.RemoveAll(filepath.Join(c.dir, name))
		unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	}
}

// Pruning keeps the keepImages images used last, and any used within
// keepRecent (a shift's station may hold one all day): the cache is keyed
// by file identity, so every download or copy of an image is a new entry,
// and the old ones would fill the disk.
const (
	keepImages = 4
	keepRecent = 24 * time.Hour
)

// prune removes the prepared images the policy above does not keep, other
// than keep (just prepared), each only while its lock is free: one being
// prepared or rewritten is left. A process flashing a removed image keeps
// it (its file is open and mapped); it is prepared again on its next use.
func (c *Cache) prune(keep string) {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	type entry struct {
		key  string
		used time.Time
	}
	var all []entry
	for _, e := range entries {
		if !e.IsDir() || strings.Contains(e.Name(), ".tmp-") || strings.Contains(e.Name(), ".damaged-") || e.Name() == keep {
			continue
		}
		if _, err := os.Stat(filepath.Join(c.dir, e.Name(), "manifest.json")); err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		all = append(all, entry{e.Name(), fi.ModTime()})
	}
	slices.SortFunc(all, func(a, b entry) int { return b.used.Compare(a.used) })
	cutoff := time.Now().Add(-keepRecent)
	for i, e := range all {
		if i < keepImages-1 || e.used.After(cutoff) { // keep counts as one
			continue
		}
		c.removeUnlocked(e.key, e.key)
	}
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
// does not hold it yet, with the SHA-256 of its file (a raw file's holes
// included) for the record. A wrong hash, a corrupt stream or a bmap that
// does not match is an ErrImageRefused error: no board is touched with it.
func (c *Cache) Prepare(ctx context.Context, spec ImageSpec, progress func(PrepareProgress)) (*Prepared, error) {
	if progress == nil {
		progress = func(PrepareProgress) {}
	}
	img, err := c.open(ctx, spec, progress, true)
	if err != nil {
		return nil, err
	}
	if img, err = img.Wait(ctx); err != nil {
		return nil, err
	}
	if img.SourceSHA256 != "" && (spec.SHA256 == "" || strings.EqualFold(spec.SHA256, img.SourceSHA256)) {
		return img, nil
	}
	// Streamed by an Open that hashed nothing, or a hash to compare.
	lock, err := c.lockKey(ctx, img.Key)
	if err != nil {
		return nil, err
	}
	defer unlock(lock)
	return c.checkCached(ctx, img, spec, progress, true)
}

// Open returns the image for spec at once: from the cache, or while it is
// being prepared (Filling), in which case Write and WriteAll stream it,
// each target writing the chunks as they reach the cache and the boot
// area once the whole image has passed its checks (Wait says how it
// ended). A raw file is read only where it holds data, and hashed only
// when spec.SHA256 asks for it; a compressed file is hashed as it is read.
// Errors found before any byte is read (no file, a bad bmap, a wrong hash
// of a cached image) are returned here. The preparation runs on ctx of
// the Open that started it.
func (c *Cache) Open(ctx context.Context, spec ImageSpec, progress func(PrepareProgress)) (*Prepared, error) {
	if progress == nil {
		progress = func(PrepareProgress) {}
	}
	return c.open(ctx, spec, progress, spec.SHA256 != "")
}

func (c *Cache) open(ctx context.Context, spec ImageSpec, progress func(PrepareProgress), hashFile bool) (*Prepared, error) {
	fi, err := os.Stat(spec.Path)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("image %s is not a regular file", spec.Path)
	}
	id := identityKey(fi)
	key := id + "-c" + strconv.FormatInt(c.chunkSize>>10, 10) + "k"
	var bm *Bmap
	var bmapSum string
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
	job := fillJob{key: key, id: id, spec: spec, bmap: bm, bmapSum: bmapSum, hashFile: hashFile, size: fi.Size(), progress: progress}
	dir := filepath.Join(c.dir, key)

	c.mu.Lock()
	if img, ok := c.inFlight[key]; ok {
		c.mu.Unlock()
		return c.join(ctx, img, spec, progress)
	}
	c.mu.Unlock()
	// The key's lock: held by whoever prepares the image (here or in
	// another station process) or rewrites its manifest.
	lock, err := c.lockKey(ctx, key)
	if err != nil {
		return nil, err
	}
	if img, err := c.load(dir); err == nil {
		defer unlock(lock)
		return c.checkCached(ctx, img, spec, progress, false)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if img, ok := c.inFlight[key]; ok { // one of ours started meanwhile
		unlock(lock)
		return c.join(ctx, img, spec, progress)
	}
	return c.startFill(ctx, lock, dir, job)
}

// join returns an image being prepared to another caller: as it is, to
// stream, when its preparation checks what the caller's spec asks for;
// else once it is prepared and checked.
func (c *Cache) join(ctx context.Context, img *Prepared, spec ImageSpec, progress func(PrepareProgress)) (*Prepared, error) {
	if spec.SHA256 == "" || strings.EqualFold(spec.SHA256, img.fill.wantSHA) {
		return img, nil
	}
	final, err := img.Wait(ctx)
	if err != nil {
		return nil, err
	}
	lock, err := c.lockKey(ctx, final.Key)
	if err != nil {
		return nil, err
	}
	defer unlock(lock)
	return c.checkCached(ctx, final, spec, progress, false)
}

// lockKey takes the key's lock file, waiting (while ctx lasts) for
// another process that holds it.
func (c *Cache) lockKey(ctx context.Context, key string) (*os.File, error) {
	lock, err := os.OpenFile(filepath.Join(c.dir, key+".lock"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		return lock, nil
	}
	got := make(chan error, 1)
	go func() { got <- unix.Flock(int(lock.Fd()), unix.LOCK_EX) }()
	select {
	case err := <-got:
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("image cache lock: %w", err)
		}
		return lock, nil
	case <-ctx.Done():
		go func() { // the lock may still come: let it go at once
			<-got
			unlock(lock)
		}()
		return nil, ctx.Err()
	}
}

func unlock(lock *os.File) {
	unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	lock.Close()
}

// identityKey names an image file by what changes when it does.
func identityKey(fi os.FileInfo) string {
	id := fmt.Sprintf("%d", fi.Size())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id = fmt.Sprintf("%d:%d:%d:%d.%d:%d.%d", st.Dev, st.Ino, fi.Size(), st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
	}
	h := sha256.Sum256([]byte(id))
	return "f" + hex.EncodeToString(h[:12])
}

// checkCached refuses a cached image whose file hash is not the line's,
// hashing the file first if the image was streamed without its hash (and
// then keeping the hash in its manifest) when spec gives a hash or
// forRecord asks for it. The caller holds the key's lock. The image
// returned may be a copy of img: img is shared.
func (c *Cache) checkCached(ctx context.Context, img *Prepared, spec ImageSpec, progress func(PrepareProgress), forRecord bool) (*Prepared, error) {
	if spec.SHA256 == "" && (!forRecord || img.SourceSHA256 != "") {
		return img, nil
	}
	if img.SourceSHA256 == "" {
		var err error
		if img, err = c.addFileHash(ctx, img, spec.Path, progress); err != nil {
			return nil, err
		}
	}
	if spec.SHA256 != "" && !strings.EqualFold(spec.SHA256, img.SourceSHA256) {
		return nil, fmt.Errorf("%w: %s has SHA-256 %s, the line expects %s (wrong or damaged file)",
			ErrImageRefused, spec.Path, img.SourceSHA256, strings.ToLower(spec.SHA256))
	}
	return img, nil
}

// fillJob is what a preparation needs.
type fillJob struct {
	key      string
	id       string // the file's identity (identityKey)
	spec     ImageSpec
	bmap     *Bmap
	bmapSum  string
	hashFile bool
	size     int64 // of the file
	progress func(PrepareProgress)
}

// startFill starts preparing job's image into dir, holding lock until it
// ends, and returns the image while it fills. c.mu is held.
func (c *Cache) startFill(ctx context.Context, lock *os.File, dir string, job fillJob) (*Prepared, error) {
	release := func() {
		unix.Flock(int(lock.Fd()), unix.LOCK_UN)
		lock.Close()
	}
	_ = os.RemoveAll(dir)
	tmp, err := os.MkdirTemp(c.dir, job.key+".tmp-")
	if err != nil {
		release()
		return nil, c.diskErr(err)
	}
	if job.bmap != nil {
		if err := c.checkSpace(job.bmap.MappedBlocks * job.bmap.BlockSize); err != nil {
			os.RemoveAll(tmp)
			release()
			return nil, err
		}
	}
	src, format, err := openImage(job.spec.Path)
	if err == nil {
		err = sameFile(src, job.id)
		if err != nil {
			src.Close()
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		release()
		return nil, err
	}
	out, err := os.OpenFile(filepath.Join(tmp, "image.raw"), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o640)
	if err != nil {
		src.Close()
		os.RemoveAll(tmp)
		release()
		return nil, c.diskErr(err)
	}
	img := &Prepared{Key: job.key, Source: job.spec.Path, Format: format, BlockSize: zeroBlock, ChunkSize: c.chunkSize,
		RawPath: out.Name(), fill: newFill(out), win: newWindows(out)}
	img.fill.wantSHA = strings.ToLower(job.spec.SHA256)
	if job.bmap != nil {
		img.BlockSize = job.bmap.BlockSize
		img.Size = job.bmap.ImageSize
		img.Bmap = &BmapInfo{Path: job.spec.Bmap, SHA256: job.bmapSum, Version: job.bmap.Version}
		img.estimate = job.bmap.MappedBlocks * job.bmap.BlockSize
	} else if format == FormatRaw {
		img.Size = job.size
	}
	c.inFlight[job.key] = img
	c.preparations.Add(1)
	go func() {
		final, err := c.prepare(ctx, tmp, dir, job, src, format, out, img)
		src.Close()
		if err != nil {
			os.RemoveAll(tmp)
		}
		release()
		if err == nil {
			c.prune(job.key)
		}
		// Out of the flights first: whoever sees the end and asks again
		// finds the cached image, or prepares anew after a failure.
		c.mu.Lock()
		delete(c.inFlight, job.key)
		c.mu.Unlock()
		img.fill.finish(final, err)
	}()
	return img, nil
}

// prepare streams the image into out, publishing its chunks to fill, and
// on success moves tmp into place as dir.
func (c *Cache) prepare(ctx context.Context, tmp, dir string, job fillJob, src *os.File, format Format, out *os.File, filling *Prepared) (*Prepared, error) {
	start := time.Now()
	fileHash := sha256.New()
	var raw io.Reader
	closeRaw := func() error { return nil }
	if format == FormatRaw {
		segs := dataSegments(src, job.size)
		if job.bmap != nil && !job.hashFile {
			segs = intersect(segs, job.bmap)
		}
		raw = &sparseReader{f: src, segs: segs, size: job.size}
		if job.hashFile {
			raw = io.TeeReader(raw, fileHash) // the raw stream is the file, holes as zeros
		}
	} else {
		var err error
		raw, closeRaw, err = decompressor(ctx, format, io.TeeReader(src, fileHash))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrImageRefused, err)
		}
	}
	var total int64
	if job.bmap != nil {
		total = job.bmap.ImageSize
	} else if format == FormatRaw {
		total = job.size
	}
	p := &preparer{out: out, chunkSize: c.chunkSize, bmap: job.bmap, publish: filling.fill.publish, progress: func(done int64) {
		job.progress(PrepareProgress{Stage: "decompress", Done: done, Total: total})
	}}
	size, err := p.run(ctx, raw)
	// The reader is joined before fileHash is read (it feeds it). An xz
	// process is closed first (killed when abandoned: that ends a read in
	// flight); an in-process decoder only after the reader stopped, as it
	// cannot be closed under a read.
	var cerr error
	if _, external := raw.(*xzProcess); external {
		cerr = closeRaw()
		p.wait()
	} else {
		p.wait()
		cerr = closeRaw()
	}
	if cerr != nil && err == nil {
		err = fmt.Errorf("%w: %v", ErrImageRefused, cerr)
	}
	if err != nil {
		return nil, c.diskErr(err)
	}
	if err := sameFile(src, job.id); err != nil {
		return nil, err
	}
	sum := ""
	if format != FormatRaw || job.hashFile {
		if format != FormatRaw {
			// What the decoder left unread (a compressed file's padding).
			if _, err := io.Copy(fileHash, src); err != nil {
				return nil, fmt.Errorf("read image: %w", err)
			}
		}
		sum = hex.EncodeToString(fileHash.Sum(nil))
		if job.spec.SHA256 != "" && !strings.EqualFold(job.spec.SHA256, sum) {
			return nil, fmt.Errorf("%w: %s has SHA-256 %s, the line expects %s (wrong or damaged file)",
				ErrImageRefused, job.spec.Path, sum, strings.ToLower(job.spec.SHA256))
		}
	}
	if err := out.Sync(); err != nil {
		return nil, c.diskErr(err)
	}
	rawFI, err := out.Stat()
	if err != nil {
		return nil, c.diskErr(err)
	}
	img := &Prepared{
		RawIdentity: identityKey(rawFI),
		Key:         job.key, Source: job.spec.Path, SourceSHA256: sum, Format: format, Size: size, BlockSize: zeroBlock,
		ChunkSize: c.chunkSize, MappedBytes: p.mapped, Chunks: p.chunks, PreparedAt: time.Now().UTC(),
		PrepareTime: time.Since(start).Seconds(), win: filling.win,
	}
	if job.bmap != nil {
		img.BlockSize = job.bmap.BlockSize
		img.Bmap = &BmapInfo{Path: job.spec.Bmap, SHA256: job.bmapSum, Version: job.bmap.Version}
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

// sameFile refuses an image file whose identity is not id: it was
// replaced or rewritten since it was named (or while it was read).
func sameFile(f *os.File, id string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read image: %w", err)
	}
	if identityKey(fi) != id {
		return fmt.Errorf("%w: %s changed while it was read (rewritten or replaced): flash again once it is complete", ErrImageRefused, f.Name())
	}
	return nil
}

// intersect keeps the parts of a raw file's data segments the bmap maps.
func intersect(segs [][2]int64, bm *Bmap) [][2]int64 {
	var out [][2]int64
	for _, r := range bm.Ranges {
		off, n := bm.byteRange(r)
		for _, s := range segs {
			lo, hi := max(s[0], off), min(s[1], off+n)
			if lo < hi {
				out = append(out, [2]int64{lo, hi})
			}
		}
	}
	return out
}

// addFileHash hashes the image file at path (a raw one's holes included),
// which must still be the file img was prepared from, and keeps the hash
// in img's manifest. It returns a copy of img with the hash. The caller
// holds the key's lock.
func (c *Cache) addFileHash(ctx context.Context, img *Prepared, path string, progress func(PrepareProgress)) (*Prepared, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	id, _, _ := strings.Cut(img.Key, "-")
	if err := sameFile(f, id); err != nil {
		return nil, err
	}
	sum, err := readSHA256(ctx, f, progress)
	if err != nil {
		return nil, err
	}
	if err := sameFile(f, id); err != nil {
		return nil, err
	}
	hashed := *img
	hashed.SourceSHA256 = sum
	manifest, _ := json.MarshalIndent(&hashed, "", "  ")
	dir := filepath.Join(c.dir, img.Key)
	tmp, err := os.CreateTemp(dir, "manifest-*.tmp")
	if err != nil {
		return nil, c.diskErr(err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(manifest)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, "manifest.json"))
	}
	if err != nil {
		return nil, c.diskErr(err)
	}
	return &hashed, nil
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
	f, err := os.Open(img.RawPath)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != img.Size {
		f.Close()
		return nil, fmt.Errorf("prepared image %s is incomplete", dir)
	}
	// Kept open for the image's life in this process: its targets map it.
	img.win = newWindows(f)
	// Its last use, for prune.
	now := time.Now()
	_ = os.Chtimes(dir, now, now)
	if img.RawIdentity == "" || identityKey(fi) != img.RawIdentity {
		img.checks = newChunkChecks(dir, len(img.Chunks))
	}
	return &img, nil
}

// readSHA256 returns the SHA-256 of the file f.
func readSHA256(ctx context.Context, f *os.File, progress func(PrepareProgress)) (string, error) {
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var done int64
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := f.ReadAt(buf, done)
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
	return hex.EncodeToString(h.Sum(nil)), nil
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
