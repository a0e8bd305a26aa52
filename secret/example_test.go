package secret_test

import (
	"fmt"

	"github.com/flashstation/flashstation/secret"
)

func ExampleValue() {
	key := secret.New("api-key-from-file")
	fmt.Println("using", key)
	fmt.Printf("%#v\n", key)
	fmt.Println(len(key.Reveal()) > 0)
	// Output:
	// using [redacted]
	// secret.Value([redacted])
	// true
}
