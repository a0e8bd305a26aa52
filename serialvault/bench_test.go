package serialvault_test

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/flashstation/flashstation/serialvault"
)

var (
	key4096Once sync.Once
	key4096     *serialvault.PrivateKey
)

// vaultKey4096 is one generated 4096-bit key, the size of a real brand key.
func vaultKey4096(b testing.TB) *serialvault.PrivateKey {
	key4096Once.Do(func() {
		k, err := serialvault.GenerateKey(4096)
		if err != nil {
			panic(err)
		}
		key4096 = k
	})
	return key4096
}

// register runs one registration the way a device does (request-id, then
// serial) against the proxy, with a pre-made device key.
func register(b testing.TB, bn *bench, dev *serialvault.PrivateKey, serial string) {
	proxyURL, model := bn.proxySrv.URL, bn.model
	w, err := bn.windows.Open(serialvault.WindowSpec{Slot: "B", Expected: serial})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	resp, err := http.Post(proxyURL+"/v1/request-id", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	resp.Body.Close()
	id := bytes.Split(bytes.Split(buf.Bytes(), []byte(`"request-id":"`))[1], []byte(`"`))[0]
	req, err := serialvault.NewSerialRequest(dev, "acme", "acme-gw-armhf", string(id), serial, nil, fixedNow)
	if err != nil {
		b.Fatal(err)
	}
	stream := append(append(req.Encode(), '\n'), model.Encode()...)
	resp, err = http.Post(proxyURL+"/v1/serial", serialvault.AssertionType, bytes.NewReader(stream))
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("serial: HTTP %d", resp.StatusCode)
	}
}

// BenchmarkRegistrationThroughProxy measures registrations per second
// through the recording proxy and the vault double with a 4096-bit vault
// key, each serial verified and durably recorded (fsync) in the ledger.
// Device keys are made beforehand: on a board they take minutes.
func BenchmarkRegistrationThroughProxy(b *testing.B) {
	vk := vaultKey4096(b)
	for _, par := range []int{1, 8} {
		b.Run(fmt.Sprintf("devices=%d", par), func(b *testing.B) {
			bn := newBenchWithKey(b, vk)
			var n atomic.Int64
			b.ResetTimer()
			if par == 1 {
				for i := 0; b.Loop(); i++ {
					register(b, bn, testKeyN(b, 1+i%3), fmt.Sprintf("B-%d", n.Add(1)))
				}
			} else {
				b.SetParallelism(par)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := n.Add(1)
						register(b, bn, testKeyN(b, 1+int(i)%3), fmt.Sprintf("B-%d", i))
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
			if got := bn.proxy.Stats().Recorded; got < int64(b.N) {
				b.Fatalf("recorded %d of %d", got, b.N)
			}
		})
	}
}
