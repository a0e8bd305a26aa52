package sim

// QEMUFault exposes qemuFault to the tests.
var QEMUFault = qemuFault
