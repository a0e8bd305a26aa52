package ledger_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/flashstation/flashstation/ledger"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ledger-example")
	defer os.RemoveAll(dir)

	l, err := ledger.Open(ctx, filepath.Join(dir, ledger.FileName))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	_ = l.EnsureStation(ctx, ledger.Station{ID: "bench-01"})
	_ = l.EnsureLine(ctx, ledger.Line{ID: "line1", StationID: "bench-01", BrandID: "acme", Model: "acme-gw-armhf"})
	batch, _ := l.StartBatch(ctx, ledger.Batch{LineID: "line1", Operator: "ana", Planned: 1})
	unit, _ := l.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "A1", HWSerial: "HW0001"})

	// Returns once the assertion is synced to disk.
	_, created, err := l.RecordSerialAssertion(ctx, ledger.SerialAssertion{
		Text:    []byte("type: serial\n...\n"),
		BrandID: "acme", Model: "acme-gw-armhf", Serial: "HW0001", Revision: 1,
		DeviceKeyID: "device-key-sha3-384-id", LineID: "line1", UnitID: unit, Via: ledger.ViaProxy,
	})
	fmt.Println(created, err)
	_ = l.FinishUnit(ctx, unit, ledger.UnitPass, "", "")

	as, _ := l.SerialAssertions(ctx, ledger.AssertionFilter{Serial: "HW0001"})
	u, _ := l.Unit(ctx, unit)
	fmt.Println(len(as), u.State)
	// Output:
	// true <nil>
	// 1 pass
}
