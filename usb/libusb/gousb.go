//go:build cgo

package libusb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/gousb"
)

// gousbBackend is the Backend on libusb, through gousb.
type gousbBackend struct {
	ctx *gousb.Context
}

// openGousb starts libusb; gousb panics when it cannot.
func openGousb() (b Backend, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("libusb: %v", p)
		}
	}()
	return &gousbBackend{ctx: gousb.NewContext()}, nil
}

func (b *gousbBackend) Close() error { return b.ctx.Close() }

func (b *gousbBackend) Open(bus int, ports []int) (Device, error) {
	devs, err := b.ctx.OpenDevices(func(d *gousb.DeviceDesc) bool {
		return d.Bus == bus && slices.Equal(d.Path, ports)
	})
	if len(devs) == 0 {
		if err != nil {
			return nil, gousbError(err)
		}
		return nil, ErrNoDevice
	}
	for _, d := range devs[1:] {
		d.Close()
	}
	d := devs[0]
	cfg, err := d.ActiveConfigNum()
	if err != nil {
		cfg = -1 // unconfigured: no interfaces to offer
	}
	return &gousbDevice{d: d, desc: descOf(d.Desc, cfg)}, nil
}

// descOf converts gousb's descriptors: the device's, and the interfaces
// of its active configuration cfg.
func descOf(g *gousb.DeviceDesc, cfg int) DeviceDesc {
	desc := DeviceDesc{Class: uint8(g.Class), USB: uint16(g.Spec), Vendor: uint16(g.Vendor), Product: uint16(g.Product)}
	for _, intf := range g.Configs[cfg].Interfaces {
		for _, a := range intf.AltSettings {
			id := InterfaceDesc{Number: a.Number, Alternate: a.Alternate, Class: uint8(a.Class), SubClass: uint8(a.SubClass), Protocol: uint8(a.Protocol)}
			for _, ep := range a.Endpoints {
				id.Endpoints = append(id.Endpoints, EndpointDesc{Number: ep.Number, In: ep.Direction == gousb.EndpointDirectionIn,
					Bulk: ep.TransferType == gousb.TransferTypeBulk, MaxPacket: ep.MaxPacketSize})
			}
			desc.Interfaces = append(desc.Interfaces, id)
		}
	}
	return desc
}

type gousbDevice struct {
	mu   sync.Mutex // ControlTimeout is the device's
	d    *gousb.Device
	desc DeviceDesc
}

func (d *gousbDevice) Desc() DeviceDesc { return d.desc }
func (d *gousbDevice) Close() error     { return gousbError(d.d.Close()) }

func (d *gousbDevice) Control(rType, request uint8, value, index uint16, data []byte, timeout time.Duration) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.d.ControlTimeout = timeout
	n, err := d.d.Control(rType, request, value, index, data)
	return n, gousbError(err)
}

func (d *gousbDevice) Claim(intf, alt, in, out int) (Pipe, error) {
	_ = d.d.SetAutoDetach(true)
	n, err := d.d.ActiveConfigNum()
	if err != nil {
		return nil, gousbError(err)
	}
	cfg, err := d.d.Config(n)
	if err != nil {
		return nil, gousbError(err)
	}
	i, err := cfg.Interface(intf, alt)
	if err != nil {
		cfg.Close()
		return nil, gousbError(err)
	}
	p := &gousbPipe{cfg: cfg, intf: i}
	if p.in, err = i.InEndpoint(in); err == nil {
		p.out, err = i.OutEndpoint(out)
	}
	if err != nil {
		p.Close()
		return nil, gousbError(err)
	}
	return p, nil
}

type gousbPipe struct {
	cfg  *gousb.Config
	intf *gousb.Interface
	in   *gousb.InEndpoint
	out  *gousb.OutEndpoint
}

func (p *gousbPipe) Write(ctx context.Context, b []byte) (int, error) {
	n, err := p.out.WriteContext(ctx, b)
	return n, gousbError(err)
}

func (p *gousbPipe) Read(ctx context.Context, b []byte) (int, error) {
	n, err := p.in.ReadContext(ctx, b)
	return n, gousbError(err)
}

func (p *gousbPipe) Close() error {
	p.intf.Close()
	return gousbError(p.cfg.Close())
}

// gousbError maps libusb's errors and transfer states to the Backend's.
func gousbError(err error) error {
	var (
		e gousb.Error
		s gousb.TransferStatus
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e) && e == gousb.ErrorNoDevice, errors.As(err, &s) && s == gousb.TransferNoDevice:
		return fmt.Errorf("%w (%v)", ErrNoDevice, err)
	case errors.As(err, &s) && s == gousb.TransferCancelled:
		return fmt.Errorf("%w (%v)", ErrCancelled, err)
	case errors.As(err, &e) && e == gousb.ErrorTimeout, errors.As(err, &s) && s == gousb.TransferTimedOut:
		return fmt.Errorf("%w (%v)", ErrTimeout, err)
	case errors.As(err, &e) && e == gousb.ErrorPipe, errors.As(err, &s) && s == gousb.TransferStall:
		return fmt.Errorf("%w (%v)", ErrStall, err)
	}
	return err
}
