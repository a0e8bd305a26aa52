package lines_test

import (
	"fmt"

	"github.com/flashstation/flashstation/lines"
)

func ExampleParse() {
	_, problems := lines.Parse("station.yaml", []byte(`station:
  id: bench-01
  data-dir: /var/lib/flashstation
lines: []
slots:
  - id: A1
    line: line1
    usb-ports: ["1-1.2"]
    method: ums
    console: {port: /dev/ttyUSB0, baud: "115200"}
`))
	for _, p := range problems {
		fmt.Println(p)
	}
	// Output:
	// station.yaml:4:8: lines: at least one line is required
	// station.yaml:7:11: slots[0].line: line "line1" is not defined (the file defines no lines)
	// station.yaml:10:41: slots[0].console.baud: want an integer, got a string "115200"
}
