package serialvault_test

import (
	"fmt"
	"os"

	"github.com/flashstation/flashstation/serialvault"
)

// Decode a serial assertion and check it against a line's trusted brand key.
func ExampleKeyRing_Verify() {
	ring := serialvault.NewKeyRing()
	if err := ring.AddFile("testdata/vectors/acme-brand-key.pub"); err != nil {
		fmt.Println(err)
		return
	}
	data, _ := os.ReadFile("testdata/vectors/04-serial-response.txt")
	a, err := serialvault.Decode(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	s, err := serialvault.AsSerial(a)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = ring.Verify(a)
	fmt.Println(s.BrandID, s.Model, s.Serial, s.Revision(), err)
	// Output: acme acme-gw-armhf LINE1-000200 1 <nil>
}

// A device builds its serial-request, self-signed by its device key.
func ExampleNewSerialRequest() {
	key, _ := serialvault.GenerateKey(2048) // 4096 on a real device
	req, _ := serialvault.NewSerialRequest(key, "acme", "acme-gw-armhf",
		"5c417545c6ea7713f3cc20698a755160ab9cd59e", "LINE1-000201", nil, fixedNow)
	parsed, err := serialvault.AsSerialRequest(req)
	fmt.Println(parsed.Serial, err, serialvault.ValidSerial(parsed.Serial))
	// Output: LINE1-000201 <nil> true
}
