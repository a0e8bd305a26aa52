// Package fastboottest is a fastboot device over TCP, as U-Boot's
// `fastboot tcp` or a simulated board provides it: the FB01 handshake,
// 8-byte big-endian framing, getvar (version, product, serialno,
// max-download-size, partition-size and partition-type of its partitions,
// all), download, flash (raw and Android sparse), erase, reboot,
// reboot-bootloader and continue. Debian's fastboot client talks to it
// (fastboot -s tcp:HOST:PORT ...). It backs the flash tests and the
// simulated boards.
package fastboottest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/flashstation/flashstation/flash"
)

// Partition is a named region of the device's storage.
type Partition struct {
	Offset, Size int64
}

// Config describes a device.
type Config struct {
	Serial  string
	Product string
	// Storage is the file holding the device's eMMC; Partitions name
	// regions of it (default: "mmc0" = the whole file).
	Storage    string
	Partitions map[string]Partition
	// MaxDownload is the download buffer size (default 64 MiB).
	MaxDownload int64
	// OnReboot is called for reboot ("") or reboot-bootloader
	// ("bootloader") and continue ("continue") after OKAY was sent.
	OnReboot func(kind string)
	// FailWriteAt, when > 0, makes a flash fail once its data would reach
	// this storage offset (a bad eMMC block).
	FailWriteAt int64
	// Throttle limits storage writes to this many bytes per second.
	Throttle float64
	// UnplugAfter, when > 0, pulls the device out (every connection
	// dropped, the listener closed) once that many bytes were downloaded;
	// OnUnplug is then called.
	UnplugAfter int64
	OnUnplug    func()
	// HangOn makes the device stop answering (a hung bootloader) when it
	// gets a command starting with this; OnHang is then called. The
	// connection stays open until the host gives up.
	HangOn string
	OnHang func(cmd string)
}

// Device is a running fastboot device.
type Device struct {
	cfg  Config
	ln   net.Listener
	disk *os.File

	mu         sync.Mutex
	download   []byte
	downloaded int64
	flashed    []string
	closed     bool
	conns      map[net.Conn]bool
	wg         sync.WaitGroup
}

// Listen starts a device on addr ("127.0.0.1:0" for any port).
func Listen(addr string, cfg Config) (*Device, error) {
	if cfg.MaxDownload == 0 {
		cfg.MaxDownload = 64 << 20
	}
	if cfg.Product == "" {
		cfg.Product = "flashstation-sim"
	}
	disk, err := os.OpenFile(cfg.Storage, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if cfg.Partitions == nil {
		fi, err := disk.Stat()
		if err != nil {
			disk.Close()
			return nil, err
		}
		cfg.Partitions = map[string]Partition{"mmc0": {0, fi.Size()}}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		disk.Close()
		return nil, err
	}
	d := &Device{cfg: cfg, ln: ln, disk: disk, conns: map[net.Conn]bool{}}
	d.wg.Add(1)
	go d.serve()
	return d, nil
}

// Addr is where the device listens.
func (d *Device) Addr() string { return d.ln.Addr().String() }

// Flashed lists the flash commands received, e.g. "mmc0 (sparse)".
func (d *Device) Flashed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.flashed...)
}

// Close stops the device, dropping open connections (an unplugged board).
func (d *Device) Close() error {
	d.mu.Lock()
	d.closed = true
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	err := d.ln.Close()
	d.wg.Wait()
	d.disk.Close()
	return err
}

func (d *Device) serve() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			c.Close()
			return
		}
		d.conns[c] = true
		d.mu.Unlock()
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() {
				d.mu.Lock()
				delete(d.conns, c)
				d.mu.Unlock()
				c.Close()
			}()
			d.session(c)
		}()
	}
}

type conn struct{ net.Conn }

func (c conn) send(kind, msg string) error {
	p := []byte(kind + msg)
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(len(p)))
	if _, err := c.Write(hdr[:]); err != nil {
		return err
	}
	_, err := c.Write(p)
	return err
}

func (c conn) recv(max uint64) ([]byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint64(hdr[:])
	if n > max {
		return nil, fmt.Errorf("packet of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(c, p)
	return p, err
}

// session serves one host connection.
func (d *Device) session(nc net.Conn) {
	c := conn{nc}
	var hs [4]byte
	if _, err := io.ReadFull(c, hs[:]); err != nil || string(hs[:2]) != "FB" {
		return
	}
	if _, err := c.Write([]byte("FB01")); err != nil {
		return
	}
	for {
		p, err := c.recv(4096)
		if err != nil {
			return
		}
		cmd := string(p)
		if d.handle(c, cmd) != nil {
			return
		}
	}
}

func (d *Device) handle(c conn, cmd string) error {
	if d.cfg.HangOn != "" && strings.HasPrefix(cmd, d.cfg.HangOn) {
		if d.cfg.OnHang != nil {
			d.cfg.OnHang(cmd)
		}
		_, _ = io.Copy(io.Discard, c) // until the host closes
		return io.EOF
	}
	switch {
	case strings.HasPrefix(cmd, "getvar:"):
		name := strings.TrimPrefix(cmd, "getvar:")
		if name == "all" {
			vars := d.vars()
			keys := make([]string, 0, len(vars))
			for k := range vars {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if err := c.send("INFO", k+": "+vars[k]); err != nil {
					return err
				}
			}
			return c.send("OKAY", "")
		}
		if v, ok := d.vars()[name]; ok {
			return c.send("OKAY", v)
		}
		return c.send("FAIL", "GetVar Variable Not found")
	case strings.HasPrefix(cmd, "download:"):
		n, err := strconv.ParseInt(strings.TrimPrefix(cmd, "download:"), 16, 64)
		if err != nil || n <= 0 {
			return c.send("FAIL", "invalid download size")
		}
		if n > d.cfg.MaxDownload {
			return c.send("FAIL", "data too large")
		}
		if err := c.send("DATA", fmt.Sprintf("%08x", n)); err != nil {
			return err
		}
		buf := make([]byte, 0, n)
		for int64(len(buf)) < n {
			p, err := c.recv(uint64(n - int64(len(buf))))
			if err != nil {
				return err
			}
			buf = append(buf, p...)
			d.mu.Lock()
			d.downloaded += int64(len(p))
			pull := d.cfg.UnplugAfter > 0 && d.downloaded >= d.cfg.UnplugAfter && !d.closed
			d.mu.Unlock()
			if pull {
				go d.unplug()
				return errors.New("unplugged")
			}
		}
		d.mu.Lock()
		d.download = buf
		d.mu.Unlock()
		return c.send("OKAY", "")
	case strings.HasPrefix(cmd, "flash:"):
		part := strings.TrimPrefix(cmd, "flash:")
		msg, err := d.flash(part)
		if err != nil {
			return c.send("FAIL", err.Error())
		}
		return c.send("OKAY", msg)
	case strings.HasPrefix(cmd, "erase:"):
		part, ok := d.cfg.Partitions[strings.TrimPrefix(cmd, "erase:")]
		if !ok {
			return c.send("FAIL", "partition not found")
		}
		zero := make([]byte, 1<<20)
		for off := int64(0); off < part.Size; off += int64(len(zero)) {
			if _, err := d.disk.WriteAt(zero[:min(int64(len(zero)), part.Size-off)], part.Offset+off); err != nil {
				return c.send("FAIL", err.Error())
			}
		}
		return c.send("OKAY", "")
	case cmd == "reboot", cmd == "reboot-bootloader", cmd == "continue":
		if err := c.send("OKAY", ""); err != nil {
			return err
		}
		_ = d.disk.Sync()
		if d.cfg.OnReboot != nil {
			d.cfg.OnReboot(map[string]string{"reboot": "", "reboot-bootloader": "bootloader", "continue": "continue"}[cmd])
		}
		return errors.New("rebooted") // the USB/TCP link goes down
	}
	return c.send("FAIL", "unknown command")
}

func (d *Device) vars() map[string]string {
	v := map[string]string{
		"version":           "0.4",
		"product":           d.cfg.Product,
		"serialno":          d.cfg.Serial,
		"max-download-size": fmt.Sprintf("0x%08x", d.cfg.MaxDownload),
		"is-userspace":      "no",
	}
	for name, p := range d.cfg.Partitions {
		v["partition-size:"+name] = fmt.Sprintf("0x%016x", p.Size)
		v["partition-type:"+name] = "raw"
	}
	return v
}

// storage is the partition as a WriterAt that honours the faults.
type storage struct {
	d    *Device
	part Partition
	lim  *flash.Throttled
}

func (s *storage) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > s.part.Size {
		return 0, fmt.Errorf("write beyond the partition")
	}
	abs := s.part.Offset + off
	if f := s.d.cfg.FailWriteAt; f > 0 && abs <= f && f < abs+int64(len(p)) {
		return 0, fmt.Errorf("mmc write failed at block %d", f/512)
	}
	if s.lim != nil {
		return s.lim.WriteAt(p, abs)
	}
	return s.d.disk.WriteAt(p, abs)
}

// diskTarget lets the throttle wrap the storage file.
type diskTarget struct {
	f *os.File
}

func (t diskTarget) Name() string                             { return t.f.Name() }
func (t diskTarget) Capacity() int64                          { return 0 }
func (t diskTarget) Align() int                               { return 0 }
func (t diskTarget) WriteAt(p []byte, off int64) (int, error) { return t.f.WriteAt(p, off) }
func (t diskTarget) ReadAt(p []byte, off int64) (int, error)  { return t.f.ReadAt(p, off) }
func (t diskTarget) Sync() error                              { return t.f.Sync() }
func (t diskTarget) DropCache() error                         { return nil }
func (t diskTarget) Gone() bool                               { return false }
func (t diskTarget) Close() error                             { return nil }

// flash writes the download buffer to a partition: sparse images chunk by
// chunk, raw data from the partition's start.
func (d *Device) flash(name string) (string, error) {
	part, ok := d.cfg.Partitions[name]
	if !ok {
		return "", fmt.Errorf("partition not found")
	}
	d.mu.Lock()
	data := d.download
	d.mu.Unlock()
	if data == nil {
		return "", fmt.Errorf("no data downloaded")
	}
	st := &storage{d: d, part: part}
	if d.cfg.Throttle > 0 {
		st.lim = flash.Throttle(diskTarget{d.disk}, d.cfg.Throttle)
	}
	kind := "raw"
	if flash.IsSparse(data) {
		kind = "sparse"
		if _, err := flash.ApplySparse(bytes.NewReader(data), st, part.Size); err != nil {
			return "", err
		}
	} else if _, err := st.WriteAt(data, 0); err != nil {
		return "", err
	}
	d.mu.Lock()
	d.flashed = append(d.flashed, name+" ("+kind+")")
	d.mu.Unlock()
	return "", nil
}

// unplug pulls the device out mid-transfer.
func (d *Device) unplug() {
	d.mu.Lock()
	d.closed = true
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.ln.Close()
	if d.cfg.OnUnplug != nil {
		d.cfg.OnUnplug()
	}
}

// Run serves until ctx ends (for the command line).
func (d *Device) Run(ctx context.Context) error {
	<-ctx.Done()
	return d.Close()
}

// Storage is the device's storage file.
func (d *Device) Storage() string { return d.cfg.Storage }
