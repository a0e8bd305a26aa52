// Package flash writes production images onto boards.
//
// An image (raw, zstd, gzip or xz, found by its first bytes) is prepared
// once into a Cache, keyed by its file's identity and its bmap: decompressed
// into a sparse raw file, mapped (from its bmap, or its non-zero blocks)
// into chunks of at most 4 MiB with a SHA-256 each (the record of what was
// flashed), and checked (the expected file hash, the bmap's range
// checksums). A raw file is read only where it holds data.
//
// The first flash of a new image streams (Cache.Open): the targets write
// each chunk as soon as it is in the cache, and the boot area (the first
// MiB) only once the whole image has passed its checks; an image refused
// midway fails every target image-refused and clears the boot area of
// those that took part of it, so none boots half of it. Prepare waits for
// the whole image instead.
//
// Write flashes one Target on its own: mapped pieces of up to 1 MiB
// straight from the mapped cache file (no copy; targets in step share the
// mapping), several in flight (one for a regular file), the first MiB
// last, fsync, then every piece read back through a bounded, shared buffer
// pool and compared byte for byte with the cache. Failures carry a reason
// code (unplugged, write-error with its offset, too-small, busy,
// verify-mismatch with the first bad byte, image-refused, ...). Block
// devices are opened with O_DIRECT|O_EXCL and refused when mounted, busy,
// the system disk, or not on a USB port. FlashFastboot sends the same
// chunks to a fastboot device (TCP or USB) as Android sparse pieces sized
// by its download buffer, once the image is whole, and says honestly that
// it cannot read them back. The sibling package fastboottest is a fastboot
// device over TCP.
package flash
