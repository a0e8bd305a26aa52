// Package sim simulates boards for the demo and the end-to-end tests, so
// that they behave like real ones where the station looks at them.
//
// A Board has a hardware serial; storage (a disk file shown as a USB mass
// storage disk, or a fastboot device over TCP that Debian's fastboot client
// talks to); a console on a pseudo-terminal; a first boot triggered by
// fastboot reboot, a power cycle or `reset` typed in U-Boot, which checks
// its storage against the image it expects and plays a realistic UC20+ (or
// UC16) boot paced at 115200 baud times a speed factor, or a failing one;
// a snapd-like registration with the device service; and a factory login
// on its console. Faults make it misbehave: unplugged mid-flash, a slow
// medium, a write error, a kernel panic, a hang, a boot loop, baud garbage,
// never registering, refused by the vault. Boards show on (and leave) their
// USB port through the same device list the real USB discovery gives.
//
// A Bench puts N boards, the vault double and a station file together in
// one directory, and serves as the station's hardware.
package sim
