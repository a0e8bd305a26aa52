package libusbtest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/flashstation/flashstation/usb/libusb"
)

// A script is a Playback in text, one call a line ('#' starts a comment):
//
//	device 1-1.2 class=0x00 usb=0x0200 vendor=0x18d1 product=0x4ee0
//	interface 1-1.2 0 alt=0 class=0xff/0x42/0x03 ep=in:1:bulk:512 ep=out:1:bulk:512
//	open 1-1.2
//	claim 1-1.2 if=0 alt=0 in=1 out=1
//	write 1-1.2 "getvar:max-download-size"
//	read 1-1.2 "OKAY0x00100000"
//	write 1-1.2 len=40960 sha256=9f86...   (download data, by digest)
//	write 1-1.2 len=1048576 taken=524288 err=no-device   (pulled mid-write)
//	read 1-1.2 hang                        (a hung board: until cancelled)
//	control 1-1 type=0x23 req=1 value=8 index=2
//	control 1-1 type=0xa0 req=6 value=0x2900 index=0 data=09020800...
//	close-pipe 1-1.2
//	close 1-1.2
//
// err= names a libusb error: no-device, cancelled, timeout or stall.

var errNames = map[string]error{
	"no-device": libusb.ErrNoDevice,
	"cancelled": libusb.ErrCancelled,
	"timeout":   libusb.ErrTimeout,
	"stall":     libusb.ErrStall,
}

// ParseScript reads a script into a Playback.
func ParseScript(r io.Reader) (*Playback, error) {
	p := &Playback{Devices: map[string]libusb.DeviceDesc{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		f, err := fields(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("script line %d: %w", n, err)
		}
		if len(f) == 0 {
			continue
		}
		if err := p.parseLine(f); err != nil {
			return nil, fmt.Errorf("script line %d: %w", n, err)
		}
	}
	return p, sc.Err()
}

// fields splits a line at spaces, keeping a quoted string whole, up to a
// '#' that starts a comment.
func fields(line string) ([]string, error) {
	var out []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
		if line[0] == '#' {
			break
		}
		if line[0] == '"' {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				return nil, err
			}
			out = append(out, q)
			line = line[len(q):]
			continue
		}
		f, rest, _ := strings.Cut(line, " ")
		out = append(out, f)
		line = rest
	}
	return out, nil
}

func num[T uint8 | uint16 | int](s string) (T, error) {
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil || uint64(T(v)) != v {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return T(v), nil
}

func (p *Playback) parseLine(f []string) error {
	if len(f) < 2 {
		return fmt.Errorf("%q: want a call and a device", strings.Join(f, " "))
	}
	kind, dev, args := f[0], f[1], f[2:]
	switch kind {
	case "device":
		return p.parseDevice(dev, args)
	case "interface":
		return p.parseInterface(dev, args)
	}
	op := Op{Kind: Kind(kind), Dev: dev}
	switch op.Kind {
	case Open, Control, Claim, Write, Read, ClosePipe, CloseDev:
	default:
		return fmt.Errorf("unknown call %q", kind)
	}
	for _, a := range args {
		if strings.HasPrefix(a, `"`) {
			s, err := strconv.Unquote(a)
			if err != nil {
				return err
			}
			op.Data = []byte(s)
			continue
		}
		if a == "hang" {
			op.Hang = true
			continue
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("%q: want key=value", a)
		}
		var err error
		switch k {
		case "type":
			op.RequestType, err = num[uint8](v)
		case "req":
			op.Request, err = num[uint8](v)
		case "value":
			op.Value, err = num[uint16](v)
		case "index":
			op.Index, err = num[uint16](v)
		case "if":
			op.Intf, err = num[int](v)
		case "alt":
			op.Alt, err = num[int](v)
		case "in":
			op.In, err = num[int](v)
		case "out":
			op.Out, err = num[int](v)
		case "len":
			op.Len, err = num[int](v)
		case "taken":
			op.Taken, err = num[int](v)
		case "data":
			op.Data, err = hex.DecodeString(v)
		case "sha256":
			var b []byte
			if b, err = hex.DecodeString(v); err == nil && len(b) != sha256.Size {
				err = fmt.Errorf("sha256 of %d bytes", len(b))
			}
			if err == nil {
				op.Sum = (*[sha256.Size]byte)(b)
			}
		case "err":
			if op.Err = errNames[v]; op.Err == nil {
				err = fmt.Errorf("unknown error %q", v)
			}
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return err
		}
	}
	p.Ops = append(p.Ops, op)
	return nil
}

func (p *Playback) parseDevice(dev string, args []string) error {
	var d libusb.DeviceDesc
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		var err error
		switch k {
		case "class":
			d.Class, err = num[uint8](v)
		case "usb":
			d.USB, err = num[uint16](v)
		case "vendor":
			d.Vendor, err = num[uint16](v)
		case "product":
			d.Product, err = num[uint16](v)
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return err
		}
	}
	p.Devices[dev] = d
	return nil
}

func (p *Playback) parseInterface(dev string, args []string) error {
	d, ok := p.Devices[dev]
	if !ok || len(args) == 0 {
		return fmt.Errorf("interface of %s: describe the device first, then give the interface number", dev)
	}
	var id libusb.InterfaceDesc
	var err error
	if id.Number, err = num[int](args[0]); err != nil {
		return err
	}
	for _, a := range args[1:] {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "alt":
			id.Alternate, err = num[int](v)
		case "class":
			c := strings.Split(v, "/")
			if len(c) != 3 {
				return fmt.Errorf("class %q: want class/subclass/protocol", v)
			}
			if id.Class, err = num[uint8](c[0]); err == nil {
				if id.SubClass, err = num[uint8](c[1]); err == nil {
					id.Protocol, err = num[uint8](c[2])
				}
			}
		case "ep":
			e := strings.Split(v, ":")
			if len(e) != 4 || (e[0] != "in" && e[0] != "out") {
				return fmt.Errorf("ep %q: want in|out:number:type:maxpacket", v)
			}
			ep := libusb.EndpointDesc{In: e[0] == "in", Bulk: e[2] == "bulk"}
			if ep.Number, err = num[int](e[1]); err == nil {
				ep.MaxPacket, err = num[int](e[3])
			}
			id.Endpoints = append(id.Endpoints, ep)
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return err
		}
	}
	d.Interfaces = append(d.Interfaces, id)
	p.Devices[dev] = d
	return nil
}

// WriteScript writes devices and ops as a script ParseScript reads back;
// a write longer than 64 bytes is written by its length and digest.
func WriteScript(w io.Writer, devices map[string]libusb.DeviceDesc, ops []Op) error {
	bw := bufio.NewWriter(w)
	names := make([]string, 0, len(devices))
	for n := range devices {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := devices[n]
		fmt.Fprintf(bw, "device %s class=%#02x usb=%#04x vendor=%#04x product=%#04x\n", n, d.Class, d.USB, d.Vendor, d.Product)
		for _, id := range d.Interfaces {
			fmt.Fprintf(bw, "interface %s %d alt=%d class=%#02x/%#02x/%#02x", n, id.Number, id.Alternate, id.Class, id.SubClass, id.Protocol)
			for _, ep := range id.Endpoints {
				dir, typ := "out", "other"
				if ep.In {
					dir = "in"
				}
				if ep.Bulk {
					typ = "bulk"
				}
				fmt.Fprintf(bw, " ep=%s:%d:%s:%d", dir, ep.Number, typ, ep.MaxPacket)
			}
			fmt.Fprintln(bw)
		}
	}
	for _, op := range ops {
		fmt.Fprintf(bw, "%s %s", op.Kind, op.Dev)
		switch op.Kind {
		case Control:
			fmt.Fprintf(bw, " type=%#02x req=%d value=%#04x index=%d", op.RequestType, op.Request, op.Value, op.Index)
			if len(op.Data) > 0 {
				fmt.Fprintf(bw, " data=%x", op.Data)
			}
		case Claim:
			fmt.Fprintf(bw, " if=%d alt=%d in=%d out=%d", op.Intf, op.Alt, op.In, op.Out)
		case Write, Read:
			switch {
			case op.Sum != nil:
				fmt.Fprintf(bw, " len=%d sha256=%x", op.Len, op.Sum[:])
			case len(op.Data) > 64 && op.Kind == Write:
				fmt.Fprintf(bw, " len=%d sha256=%x", len(op.Data), sha256.Sum256(op.Data))
			default:
				fmt.Fprintf(bw, " %q", op.Data)
			}
		}
		if op.Taken > 0 {
			fmt.Fprintf(bw, " taken=%d", op.Taken)
		}
		if op.Err != nil {
			fmt.Fprintf(bw, " err=%s", errName(op.Err))
		}
		fmt.Fprintln(bw)
	}
	return bw.Flush()
}

func errName(err error) string {
	for n, e := range errNames {
		if errors.Is(err, e) {
			return n
		}
	}
	return "no-device"
}
