package seed

import "context"

// Read is a stub until the reader lands.
func Read(ctx context.Context, path string) (*Image, error) { return &Image{Path: path}, nil }
