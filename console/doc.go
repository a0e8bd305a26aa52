// Package console watches a board's first boot over its serial console.
//
// It owns serial capture, the line splitter, boot profiles and the boot stage
// machine, transcripts, and capture of the serial assertion over a console
// login.
//
// The watcher lands with the boot watcher issue; this package currently holds
// only its documentation so that the layout is fixed.
package console
