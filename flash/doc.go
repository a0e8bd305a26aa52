// Package flash writes production images onto boards.
//
// An image (raw, zstd, gzip or xz, found by its first bytes) is prepared
// once into a Cache: decompressed into a sparse raw file, mapped (from its
// bmap, or its non-zero blocks) into chunks of at most 4 MiB with a SHA-256
// each, and checked (the expected file hash, the bmap's range checksums)
// before any board is touched. Write then flashes one Target on its own:
// mapped chunks only with several I/Os in flight, the first MiB last, fsync,
// then every chunk read back and compared; failures carry a reason code
// (unplugged, write-error with its offset, too-small, busy, verify-mismatch
// with the first bad offset, ...). Block devices are opened with
// O_DIRECT|O_EXCL and refused when mounted, busy, the system disk, or not on
// a USB port. FlashFastboot sends the same chunks to a fastboot device (TCP
// or USB) as Android sparse pieces sized by its download buffer, and says
// honestly that it cannot read them back. The sibling package fastboottest
// is a fastboot device over TCP.
package flash
