package flash

// Preparations is how many images this cache decompressed.
func (c *Cache) Preparations() int64 { return c.preparations.Load() }

// SetChunkSize changes the chunk size (tests use small chunks).
func (c *Cache) SetChunkSize(n int64) { c.chunkSize = n }

// UsePureGoXz forces the pure-Go xz decoder.
func UsePureGoXz() func() {
	old := xzCommand
	xzCommand = ""
	return func() { xzCommand = old }
}

// UseXzCommand makes the system-xz decoder run path (tests give a fake).
func UseXzCommand(path string) func() {
	old := xzCommand
	xzCommand = path
	return func() { xzCommand = old }
}
