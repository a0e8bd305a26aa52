package yamlbound

// Hooks for the tests.
var (
	ScanDepth = scanDepth
)
