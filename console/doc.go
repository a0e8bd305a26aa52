// Package console watches a board's first boot over its serial console.
//
// A Capture reads the port (opened and configured with go.bug.st/serial,
// locked against other users, reopened with back-off after an unplug, the
// gap marked) into chunks and a durable raw Transcript. A Splitter turns
// bytes into lines by the spec's rules (CR/LF forms, spinners redrawn with
// a bare CR, backspaces, ANSI escapes, invalid UTF-8, a 4 KiB line cap,
// prompts without a newline). A Machine follows a boot Profile (built-in
// uc16, uc18, uc20, uc22, uc24, or a YAML file) stage by stage, with
// per-stage timeouts, fail patterns, kernel panic capture, boot-loop and
// baud-mismatch detection, and (UC20+, Machine.ExpectSeedLabel) the
// recovery system the kernel command line names checked against the
// image's seed label; every failure has a reason code and the last lines. CaptureSerial logs in on a ready console and reads the serial
// assertion for lines that capture over the console. The station writes to
// a console only then.
package console
