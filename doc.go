// Package flashstation is the root of the flashstation module: a factory
// flashing station for Ubuntu Core devices.
//
// The station flashes a production line's signed image onto many boards in
// parallel, watches each board's first boot over its serial console, captures
// the serial assertion that the line's Serial Vault signs for the board and
// records every unit in a durable ledger. See README.md for the user's view
// and DEVELOPERS.md for the layout:
//
//   - cmd/flashstation: the command line (a thin main)
//   - lines: station configuration and the per-slot job pipeline
//   - flash: image sources, the prepared image cache and flash targets
//   - console: serial capture and the boot stage machine
//   - serialvault: assertions, the vault client and the recording proxy
//   - ledger: the durable record of batches, units, events and assertions
//   - tui: the bench terminal interface
//   - sim: simulated boards for the demo and end-to-end tests
//   - usb: USB devices, disks and serial ports by port path; hub power
//   - secret, logging: redacted secrets and the injected logger
package flashstation
