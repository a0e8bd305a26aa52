// Package sim simulates boards for the demo and the end-to-end tests: disk
// or fastboot storage, a serial console on a pseudo-terminal, a realistic
// first boot and registration with the Serial Vault.
//
// The simulator lands with the simulated boards issue; this package
// currently holds only its documentation so that the layout is fixed.
package sim
