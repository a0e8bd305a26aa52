package lines

import (
	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/flash"
	"github.com/flashstation/flashstation/ledger"
)

// Reason codes the pipeline adds to those of flash and console.
const (
	ReasonRegistrationTimeout = console.ReasonRegistrationWait // "registration-timeout"
	ReasonVaultRefused        = "vault-refused"
	ReasonAssertionInvalid    = "assertion-invalid"
	ReasonTriggerFailed       = "trigger-failed"
	ReasonInterrupted         = "interrupted"
	ReasonCancelled           = "cancelled"
	ReasonStorage             = "storage-error"
	ReasonNoExpectedSerial    = "no-expected-serial"
	ReasonSerialConflict      = "serial-conflict"
	ReasonIdentityMismatch    = "identity-mismatch"
)

// Outcome classes of a unit that did not pass (ledger unit states).
const (
	ClassFail    = ledger.UnitFail    // the board's fault: enters yield and the failure pareto
	ClassError   = ledger.UnitError   // the station's fault (storage, trigger, vault, setup)
	ClassAborted = ledger.UnitAborted // stopped by the operator, the station or the batch's end
)

// Reason explains a reason code to an operator: what happened and what to
// do at the bench, and whose fault it is.
type Reason struct {
	Code   string
	Class  string // ClassFail, ClassError or ClassAborted
	What   string
	Advice string
	// Do is the advice in a few words, for a slot card.
	Do string
}

// What the operator does with a board that did not pass.
const (
	// ThenRetry: the board may be good; work it again (r), once.
	ThenRetry = "retry"
	// ThenReject: the board is at fault: it goes to the reject tray.
	ThenReject = "reject"
	// ThenFix: the station or the line is at fault: keep the board, fix
	// what Do says, then retry.
	ThenFix = "fix"
)

// rejectOnSight are the board faults no retry mends.
var rejectOnSight = map[string]bool{
	flash.ReasonTooSmall: true, console.ReasonBootLoop: true, ReasonSerialConflict: true, ReasonIdentityMismatch: true,
}

// Then says what the operator does with a board that ended with this
// reason on its attempt-th try: the station's and the line's faults are
// fixed first (the board waits); a board fault is retried once, then
// rejected; some faults are rejected at once.
func (r Reason) Then(attempt int) string {
	switch {
	case r.Class == ClassError:
		return ThenFix
	case r.Class == ClassAborted:
		return ThenRetry
	case rejectOnSight[r.Code] || attempt >= 2:
		return ThenReject
	}
	return ThenRetry
}

// Instruction is what a slot card tells the operator to do with its board
// (trays from the line): never the pass tray for a board that did not pass.
func Instruction(passed bool, reason string, attempt int, trays Trays) string {
	if trays.Pass == "" {
		trays.Pass = DefaultPassTray
	}
	if trays.Reject == "" {
		trays.Reject = DefaultRejectTray
	}
	if passed {
		return "→ " + trays.Pass
	}
	r := ReasonFor(reason)
	switch r.Then(attempt) {
	case ThenReject:
		return "→ " + trays.Reject
	case ThenFix:
		return "→ fix: " + r.Do
	}
	if r.Code == ReasonBatchEnded {
		return "→ " + r.Do // the next batch, not this one
	}
	return "→ retry (r)"
}

// Reasons is the one table of failure reasons (the README shows it).
var Reasons = []Reason{
	{flash.ReasonUnplugged, ClassFail, "the board disappeared during the write", "check the USB cable; retry", "check cable, retry"},
	{flash.ReasonWriteError, ClassFail, "a write to the board failed", "retry; if it repeats, the eMMC is bad: set the board aside", "retry / set aside"},
	{flash.ReasonTooSmall, ClassFail, "the board's storage is smaller than the image", "wrong board or wrong image: check the line", "wrong board/image"},
	{flash.ReasonBusy, ClassError, "the board's disk is in use by something else", "unmount it or stop the program using it; retry", "free the disk, retry"},
	{flash.ReasonMounted, ClassError, "the board's disk is mounted on this PC", "unmount it (desktop automount?); retry", "unmount, retry"},
	{flash.ReasonSystemDisk, ClassError, "the target is this PC's system disk", "check the slot's USB port paths", "check slot ports"},
	{flash.ReasonNotUSB, ClassError, "the disk is not on the slot's USB port", "check the slot's USB port paths", "check slot ports"},
	{flash.ReasonOpen, ClassFail, "the target could not be opened", "check permissions and the cable; retry", "check cable, retry"},
	{flash.ReasonVerify, ClassFail, "read-back differs from what was written", "retry; if it repeats, the eMMC is bad: set the board aside", "retry / set aside"},
	{flash.ReasonReadError, ClassFail, "read-back failed", "check the USB cable; retry", "check cable, retry"},
	{flash.ReasonFastboot, ClassFail, "the board's fastboot refused a command", "check the partition name and U-Boot; retry", "check U-Boot, retry"},
	{flash.ReasonNoDevice, ClassFail, "the target is not there or is not a block device (no board's disk at that path)", "check the board is plugged in and shows as a disk (`flashstation devices`); check the target path", "check board, path"},
	{flash.ReasonImage, ClassError, "the image failed its checks", "fix the line's image (hash, bmap) before flashing", "fix the line's image"},
	{flash.ReasonPrepare, ClassError, "the station could not prepare the image", "free space on the station's cache disk; retry", "free cache disk"},
	{console.ReasonNoOutput, ClassFail, "nothing on the console", "check the console cable, the baud rate and the board's power", "check console cable"},
	{console.ReasonBaudMismatch, ClassError, "only unreadable bytes on the console", "set the slot's baud rate; check the console wiring", "check baud, wiring"},
	{console.ReasonBootloaderError, ClassFail, "the bootloader gave up", "retry; check the image", "retry"},
	{console.ReasonKernelPanic, ClassFail, "the kernel panicked", "retry; if it repeats, the board or the image is bad", "retry / set aside"},
	{console.ReasonBootLoop, ClassFail, "the board keeps rebooting", "remove the board: hardware or image fault", "remove board"},
	{console.ReasonSeedLabel, ClassFail, "the board booted another recovery system than the image written (a stale disk or the wrong boot device)", "check the board boots from the disk just written (boot order, a stale SD card or eMMC); retry", "check boot device"},
	{console.ReasonSeedError, ClassFail, "snapd could not seed the system", "check the image (snaps, model)", "check the image"},
	{console.ReasonStageTimeout, ClassFail, "a boot stage did not come in time", "retry; a slow eMMC needs a profile with longer timeouts", "retry"},
	{console.ReasonBootTimeout, ClassFail, "the boot took longer than its cap", "retry; check the profile", "retry"},
	{console.ReasonUnplugged, ClassError, "the console adapter went away", "reseat the console cable", "reseat console cable"},
	{console.ReasonPortBusy, ClassError, "the console port is in use", "stop what holds it (brltty, ModemManager, another station)", "free console port"},
	{console.ReasonPortMissing, ClassError, "the console port is missing", "plug the console adapter; check the slot's console port", "plug console adapter"},
	{console.ReasonPortPermission, ClassError, "no permission on the console port", "add the station's user to the dialout group", "dialout group"},
	{console.ReasonPort, ClassError, "the console port failed", "reseat the console adapter", "reseat console cable"},
	{console.ReasonConsoleConf, ClassError, "the board shows console-conf: it has no factory user", "fix the image (system-user), or capture through the proxy", "fix the image"},
	{console.ReasonLoginFailed, ClassError, "the console login was refused", "check the line's console user and password", "check password"},
	{console.ReasonNoShell, ClassFail, "no shell answered on the console", "retry", "retry"},
	{console.ReasonRegistration, ClassError, "snapd gave up registering", "check the vault (model, api-key); retry", "check vault, retry"},
	{console.ReasonNoSerial, ClassFail, "the board printed no serial assertion", "retry", "retry"},
	{ReasonRegistrationTimeout, ClassFail, "no serial assertion arrived in time (snapd did not finish registering)", "check the board's network to the station and the vault; retry", "check network, retry"},
	{ReasonVaultRefused, ClassError, "the board's registration was refused, and no serial came before its window closed (by the vault, or by the station where the vault would refuse)", "check the vault (model, api-key, signing key); retry", "check vault, retry"},
	{ReasonNoExpectedSerial, ClassFail, "the station cannot tell which serial the board will propose (no hardware serial, or not in the strict form)", "check the board's USB serial (`flashstation devices`) and the line's registration.expected-serial", "check board serial"},
	{ReasonSerialConflict, ClassFail, "another board on the bench expects the same serial (two boards report one hardware serial); this one was not booted", "set this board aside until the other is done; boards need unique serials", "set aside (same SN)"},
	{ReasonIdentityMismatch, ClassFail, "the board does not hold the identity recorded for it: another device registered in its place", "keep the board aside and tell QA; both assertions are in the unit's evidence", "set aside, tell QA"},
	{ReasonAssertionInvalid, ClassError, "the serial assertion does not verify", "check the line's brand keys and the vault's signing key", "check brand keys"},
	{ReasonTriggerFailed, ClassError, "the boot could not be triggered", "check the hub's power switching; power-cycle by hand", "power-cycle by hand"},
	{ReasonInterrupted, ClassAborted, "the station stopped while the board was in work", "retry the board", "retry"},
	{ReasonBatchEnded, ClassAborted, "the batch was ended while the board was in work", "work the board in the next batch", "next batch"},
	{ReasonCancelled, ClassAborted, "the operator stopped the slot", "retry when ready", "retry"},
	{ReasonStorage, ClassError, "the station could not record the unit", "check the station's disk; retry", "check disk, retry"},
}

// ReasonFor returns the entry of a reason code (a generic one for codes
// from profile files).
func ReasonFor(code string) Reason {
	for _, r := range Reasons {
		if r.Code == code {
			return r
		}
	}
	return Reason{Code: code, Class: ClassFail, What: "the boot matched a failure pattern (" + code + ")", Advice: "retry; see the console lines", Do: "retry"}
}
