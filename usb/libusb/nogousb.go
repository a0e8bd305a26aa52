//go:build !cgo

package libusb

// openGousb fails: a flashstation built without cgo has no libusb.
func openGousb() (Backend, error) { return nil, ErrUnavailable }
