//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/flashstation/flashstation/internal/armimage/eeprom"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

// maxModel bounds the model assertion read from the seed.
const maxModel = 1 << 20

// readModel reads systems/<label>/model from the ubuntu-seed vfat, as
// snapd finds the model of the recovery system it runs.
func readModel(seedDev, label string) (*serialvault.Assertion, error) {
	f, err := os.Open(seedDev)
	if err != nil {
		return nil, fmt.Errorf("reading the model: %w", err)
	}
	defer f.Close()
	fs, err := openFAT(f)
	if err != nil {
		return nil, fmt.Errorf("reading the model on %s: %w", seedDev, err)
	}
	data, err := fs.readFile("systems/"+label+"/model", maxModel)
	if err != nil {
		return nil, fmt.Errorf("reading the model on %s: %w", seedDev, err)
	}
	a, err := serialvault.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("the seed's model: %w", err)
	}
	return a, nil
}

// register is snapd's "Initialize device": the device key from the
// hardware facts, then the serial request to the device service, through
// the same code as the simulated boards (vaulttest.Device) with snapd's
// waits. It prints nothing on the console, as snapd does not.
func register(ctx context.Context, facts eeprom.Facts, model *serialvault.Assertion, mac string) (*serialvault.Serial, error) {
	if facts.KeyPEM == "" {
		return nil, errors.New("registering: no device key in the EEPROM")
	}
	if facts.DeviceService == "" {
		return nil, errors.New("registering: no device service in the EEPROM")
	}
	key, err := serialvault.ParsePrivateKeyPEM([]byte(facts.KeyPEM))
	if err != nil {
		return nil, fmt.Errorf("registering: the device key: %w", err)
	}
	d := &vaulttest.Device{
		Key: key, Model: model, Serial: facts.Serial, URL: facts.DeviceService, Headers: facts.Headers,
		Body: []byte(fmt.Sprintf("mac: %q\n", mac)),
	}
	res, err := d.Register(ctx)
	if err != nil {
		return nil, fmt.Errorf("registering: %w", err)
	}
	return res.Serial, nil
}

// probe tries a TCP connection to each address and prints what came of
// it: a bench check that the board reaches nothing but the proxy.
func probe(ctx context.Context, out func(string), addrs []string) {
	for _, addr := range addrs {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		cancel()
		if err != nil {
			out(fmt.Sprintf("flashstation-board: probe %s: unreachable (%v)\n", addr, err))
			continue
		}
		c.Close()
		out(fmt.Sprintf("flashstation-board: probe %s: connected\n", addr))
	}
}
