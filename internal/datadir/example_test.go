package datadir_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/flashstation/flashstation/internal/datadir"
)

// A station locks its data directory for as long as it runs; a second
// station on the same directory is refused with who holds it.
func Example() {
	dir, err := os.MkdirTemp("", "station-data-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	lock, err := datadir.Acquire(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = datadir.Acquire(dir)
	var inUse *datadir.InUseError
	fmt.Println("second station refused:", errors.As(err, &inUse), inUse.Holder.PID == os.Getpid())

	lock.Close()
	lock, err = datadir.Acquire(dir)
	fmt.Println("after Close:", err)
	lock.Close()
	// Output:
	// second station refused: true true
	// after Close: <nil>
}
