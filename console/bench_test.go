package console_test

import (
	"testing"
	"time"

	"github.com/flashstation/flashstation/console"
)

// BenchmarkMachineComposite feeds the whole composite transcript in 64-byte
// reads, as a serial port delivers it.
func BenchmarkMachineComposite(b *testing.B) {
	data := composite(b)
	p := profile(b, "uc20")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		m := console.NewMachine(p, t0)
		now := t0
		for i := 0; i < len(data); i += 64 {
			now = now.Add(5 * time.Millisecond)
			m.Feed(now, data[i:min(i+64, len(data))])
		}
		if !m.Verdict().Passed {
			b.Fatal("not passed")
		}
	}
}
