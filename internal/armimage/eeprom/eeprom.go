// Package eeprom is the wire format of the QEMU bench board's "EEPROM":
// the hardware facts of one board (its serial, its device key, the device
// service its snapd would use, its factory console user) that the host
// writes into a small read-only virtio disk and the board's init
// (cmd/flashstation-board) reads raw. Every board is flashed with the
// same image: what makes a board itself comes from this disk, as a real
// board's serial and key come from its EEPROM or secure element.
//
// The format is a header line, a JSON object, then zeros up to a whole
// number of sectors. It imports nothing heavy: the guest links it.
package eeprom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Magic is the disk's first line.
const Magic = "FLASHSTATION-EEPROM 1\n"

// DiskSerial is the virtio-blk serial of the EEPROM disk: the guest finds
// the disk by it (/sys/block/vdX/serial), whatever its vdX name.
const DiskSerial = "fs-eeprom"

// sector is the disk's size granule.
const sector = 512

// MaxSize bounds the disk the guest reads.
const MaxSize = 64 << 10

// Facts are one board's hardware facts.
type Facts struct {
	Serial string `json:"serial"`
	// KeyPEM is the device key (PKCS#1 or PKCS#8 PEM).
	KeyPEM string `json:"key-pem"`
	// DeviceService is device-service.url as the guest reaches it, and
	// Headers device-service.headers.
	DeviceService string            `json:"device-service"`
	Headers       map[string]string `json:"headers,omitempty"`
	// ConsoleUser and ConsolePassword are the factory login (none: the
	// console shows console-conf's "Press enter to configure.").
	ConsoleUser     string `json:"console-user,omitempty"`
	ConsolePassword string `json:"console-password,omitempty"`
	// Probes are host:port addresses the guest tries to connect to once
	// its network is up, printing each outcome on the console: a bench
	// check that the network reaches nothing but the proxy. Empty on
	// boards the station watches.
	Probes []string `json:"probes,omitempty"`
}

// Encode returns the disk's bytes for f.
func Encode(f Facts) ([]byte, error) {
	j, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("eeprom: %w", err)
	}
	b := append([]byte(Magic), j...)
	b = append(b, '\n')
	if len(b) > MaxSize {
		return nil, fmt.Errorf("eeprom: %d bytes, more than %d", len(b), MaxSize)
	}
	if n := len(b) % sector; n != 0 {
		b = append(b, make([]byte, sector-n)...)
	}
	return b, nil
}

// ErrNotEEPROM is a disk without the header.
var ErrNotEEPROM = errors.New("eeprom: no header")

// Decode reads the facts from the disk's bytes.
func Decode(data []byte) (Facts, error) {
	var f Facts
	rest, ok := bytes.CutPrefix(data, []byte(Magic))
	if !ok {
		return f, ErrNotEEPROM
	}
	if i := bytes.IndexByte(rest, 0); i >= 0 {
		rest = rest[:i]
	}
	if err := json.Unmarshal(rest, &f); err != nil {
		return f, fmt.Errorf("eeprom: %w", err)
	}
	return f, nil
}
