// Package flash writes production images onto boards.
//
// It owns image sources (raw, zstd, gzip, xz), block maps (bmap), the
// prepared image cache, mapped-range writes with read-back verification and
// the targets a slot can present: USB mass-storage block devices and
// fastboot devices over USB or TCP, plus USB slot discovery.
//
// The engine lands with the flash engine issue; this package currently holds
// only its documentation so that the layout is fixed.
package flash
