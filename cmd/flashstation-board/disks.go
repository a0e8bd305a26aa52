//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flashstation/flashstation/internal/armimage/eeprom"
)

// disks are the board's virtio disks: the flashed one and, when the bench
// attached it, the identity "EEPROM".
type disks struct {
	seed   string // the ubuntu-seed partition, e.g. /dev/vda1
	eeprom string // the EEPROM disk, e.g. /dev/vdb ("" when there is none)
}

// findDisks waits until every virtio block device the kernel found has
// its disk (the driver probes them as it loads), then tells the EEPROM,
// by its virtio-blk serial, from the flashed disk.
func findDisks() (disks, error) {
	deadline := time.Now().Add(diskWait)
	for {
		d, err := scanDisks()
		if err == nil {
			return d, nil
		}
		if time.Now().After(deadline) {
			return disks{}, fmt.Errorf("finding the disks within %v: %w", diskWait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func scanDisks() (disks, error) {
	var d disks
	blocks := 0
	devs, _ := filepath.Glob("/sys/bus/virtio/devices/virtio*/device")
	for _, p := range devs {
		if id, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(id)) == "0x0002" {
			blocks++
		}
	}
	names, _ := filepath.Glob("/sys/block/vd*")
	if blocks == 0 || len(names) < blocks {
		return d, fmt.Errorf("%d of %d virtio disks", len(names), blocks)
	}
	for _, sys := range names {
		name := filepath.Base(sys)
		serial, _ := os.ReadFile(filepath.Join(sys, "serial"))
		if strings.TrimSpace(string(serial)) == eeprom.DiskSerial {
			d.eeprom = "/dev/" + name
			continue
		}
		if d.seed == "" {
			d.seed = "/dev/" + name + "1"
		}
	}
	if d.seed == "" {
		return d, errors.New("no flashed disk")
	}
	for _, dev := range []string{d.seed, d.eeprom} {
		if _, err := os.Stat(dev); dev != "" && err != nil {
			return d, err
		}
	}
	return d, nil
}

// readFacts reads the board's hardware facts from the EEPROM disk.
func readFacts(dev string) (eeprom.Facts, error) {
	f, err := os.Open(dev)
	if err != nil {
		return eeprom.Facts{}, fmt.Errorf("reading the EEPROM: %w", err)
	}
	defer f.Close()
	buf := make([]byte, eeprom.MaxSize)
	n, err := f.ReadAt(buf, 0)
	if n == 0 && err != nil {
		return eeprom.Facts{}, fmt.Errorf("reading the EEPROM %s: %w", dev, err)
	}
	facts, err := eeprom.Decode(buf[:n])
	if err != nil {
		return facts, fmt.Errorf("reading the EEPROM %s: %w", dev, err)
	}
	return facts, nil
}
