package seed

import "context"

// ReadBytes reads an image held in memory, as Read reads a file: for the
// fuzz targets.
func ReadBytes(ctx context.Context, b []byte) (*Image, error) {
	return readFrom(ctx, "fuzz.img", &memFile{Reader: bytesReader(b), size: int64(len(b))}, int64(len(b)))
}
