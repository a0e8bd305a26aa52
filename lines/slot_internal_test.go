package lines

import (
	"testing"

	"github.com/flashstation/flashstation/usb"
)

// TestPresenceCountsEveryChange: the slot counts each change of what is on
// its ports, so a swap between two looks of its loop (board A, then board
// B, never an empty port) is seen; the same device seen again is not a
// change.
func TestPresenceCountsEveryChange(t *testing.T) {
	s := &slotRun{wake: make(chan struct{}, 1)}
	a := &usb.Device{PortPath: "1-1.2", Serial: "A", Bus: 1, Address: 5, Disks: []string{"/dev/sdb"}}
	a2 := *a
	b := &usb.Device{PortPath: "1-1.2", Serial: "B", Bus: 1, Address: 6, Disks: []string{"/dev/sdb"}}
	reenum := *a
	reenum.Address = 7
	fastboot := *a
	fastboot.Fastboot, fastboot.Disks = true, nil
	steps := []struct {
		name string
		dev  *usb.Device
		want uint64
	}{
		{"empty stays empty", nil, 0},
		{"board A", a, 1},
		{"A seen again", &a2, 1},
		{"swapped for B without an empty look", b, 2},
		{"A again", a, 3},
		{"A re-enumerated", &reenum, 4},
		{"A in fastboot mode", &fastboot, 5},
		{"pulled", nil, 6},
		{"still empty", nil, 6},
	}
	for _, st := range steps {
		s.setPresence(st.dev)
		if s.changes != st.want {
			t.Fatalf("%s: %d changes, want %d", st.name, s.changes, st.want)
		}
	}
	select {
	case <-s.wake:
	default:
		t.Error("a change did not wake the slot")
	}
}
