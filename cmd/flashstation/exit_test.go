package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/internal/datadir"
	"github.com/flashstation/flashstation/ledger"
)

// benchFixture is a station file and a ledger holding batch 1 on line1
// with one passed unit (board HW-0001, serial ACME-0001) and its serial
// assertion, and an empty batch 2 on line0, a line only the ledger knows;
// made through the ledger API. envConfig is the same station
// with its console password in an environment variable that is not set.
type benchFixture struct {
	config, envConfig, dir string
}

const unsetPasswordEnv = "FLASHSTATION_TEST_UNSET_PASSWORD"

func newBenchFixture(t *testing.T) benchFixture {
	t.Helper()
	dir := t.TempDir()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	station := func(password string) string {
		return fmt.Sprintf(`station: {id: bench-t, data-dir: data}
lines:
  - id: line1
    model: %[1]s/configs/assets/acme-gw-armhf.model
    brand-keys: [%[1]s/configs/assets/acme-brand-key.pub]
    image: {file: %[1]s/configs/assets/acme-gw-armhf.img.xz}
    vault: {url: "http://127.0.0.1:9/v1/", api-key: {file: api.key}}
    capture: {method: console, user: factory, password: %[2]s}
slots:
  - {id: A1, line: line1, usb-ports: ["1-1"], method: ums, console: {port: /dev/ttyUSB0}}
`, repo, password)
	}
	f := benchFixture{config: filepath.Join(dir, "station.yaml"), envConfig: filepath.Join(dir, "env.yaml"), dir: dir}
	for name, content := range map[string]string{
		f.config:                       station("{file: password}"),
		f.envConfig:                    station("{env: " + unsetPasswordEnv + "}"),
		filepath.Join(dir, "api.key"):  "key\n",
		filepath.Join(dir, "password"): "pw\n",
	} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	ctx := context.Background()
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	led, err := ledger.Open(ctx, filepath.Join(dir, "data", ledger.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(led.EnsureStation(ctx, ledger.Station{ID: "bench-t", Hostname: "h"}))
	must(led.EnsureLine(ctx, ledger.Line{ID: "line1", StationID: "bench-t", Name: "line1", BrandID: "acme", Model: "acme-gw-armhf"}))
	batch, err := led.StartBatch(ctx, ledger.Batch{LineID: "line1", Operator: "ana", Planned: 1})
	must(err)
	unit, err := led.StartUnit(ctx, ledger.Unit{BatchID: batch, LineID: "line1", SlotID: "A1", HWSerial: "HW-0001"})
	must(err)
	must(led.UpdateUnit(ctx, unit, ledger.UnitProgress{Serial: "ACME-0001", FlashTime: time.Second, BootTime: time.Second}))
	must(led.FinishUnit(ctx, unit, ledger.UnitPass, "", ""))
	_, _, err = led.RecordSerialAssertion(ctx, ledger.SerialAssertion{
		Text:    []byte("type: serial\nauthority-id: acme\nbrand-id: acme\nmodel: acme-gw-armhf\nserial: ACME-0001\n\nSIG\n"),
		BrandID: "acme", Model: "acme-gw-armhf", Serial: "ACME-0001", Revision: 1, DeviceKeyID: "key-1",
		LineID: "line1", UnitID: unit, Via: ledger.ViaConsole,
	})
	must(err)
	// A line the station file no longer has, with a batch: the ledger knows it.
	must(led.EnsureLine(ctx, ledger.Line{ID: "line0", StationID: "bench-t", Name: "line0", BrandID: "acme", Model: "acme-gw-armhf"}))
	_, err = led.StartBatch(ctx, ledger.Batch{LineID: "line0", Operator: "ana", Planned: 1})
	must(err)
	return f
}

// oneJSONDocument decodes stdout as exactly one JSON document.
func oneJSONDocument(t *testing.T, stdout string) map[string]json.RawMessage {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var doc map[string]json.RawMessage
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("stdout is not a JSON document: %v\n%s", err, stdout)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		t.Fatalf("stdout holds more than one JSON document (%v):\n%s", err, stdout)
	}
	return doc
}

// errorDocument checks stdout is exactly {"error": {code, reason, message[, hint]}}.
func errorDocument(t *testing.T, stdout string) errorBody {
	t.Helper()
	doc := oneJSONDocument(t, stdout)
	raw, ok := doc["error"]
	if !ok || len(doc) != 1 {
		t.Fatalf("want a document with only \"error\", got %s", stdout)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var body errorBody
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error document: %v\n%s", err, stdout)
	}
	if body.Message == "" || body.Reason == "" {
		t.Errorf("error document lacks a message or a reason: %s", stdout)
	}
	return body
}

// TestExitContract runs each command-line reproduction of the exit-code
// contract: the exit code, what stdout holds (nothing, a result, or one
// JSON error document) and what stderr tells the user to do.
func TestExitContract(t *testing.T) {
	f := newBenchFixture(t)
	const (
		cfg    = "@CFG"
		envCfg = "@ENVCFG"
		dir    = "@DIR"
	)
	for _, tc := range []struct {
		name     string
		args     []string
		env      map[string]string
		code     int
		reason   string   // want one JSON error document with this reason
		stdout   string   // want stdout to contain this (a result)
		stderr   []string // want stderr to contain each
		noStdout bool
		held     bool // another station holds the data directory
	}{
		// Lookups that match nothing: exit 3, never 0 with empty output.
		{name: "status unknown batch", args: []string{"status", "--config", cfg, "--batch", "99"}, code: exitNoMatch, noStdout: true,
			stderr: []string{"no batch 99 in the ledger", "Pick one of the recorded batches (1, 2), or leave out --batch"}},
		{name: "status unknown batch json", args: []string{"status", "--config", cfg, "--batch", "99", "--json"}, code: exitNoMatch, reason: reasonNoMatch,
			stderr: []string{"no batch 99"}},
		{name: "status unknown line", args: []string{"status", "--config", cfg, "--line", "nope"}, code: exitNoMatch, noStdout: true,
			stderr: []string{`no line "nope"`, "known lines (line1, line0)"}},
		{name: "status unknown line json", args: []string{"status", "--config", cfg, "--line", "nope", "--json"}, code: exitNoMatch, reason: reasonNoMatch},
		{name: "status line and batch", args: []string{"status", "--config", cfg, "--line", "line1", "--batch", "1", "--json"}, code: exitOK,
			stdout: `"passed": 1`},
		{name: "status batch on another line", args: []string{"status", "--config", cfg, "--line", "line1", "--batch", "2"}, code: exitNoMatch,
			noStdout: true, stderr: []string{"batch 2 is on line line0, not on line line1", "give --line line0"}},
		{name: "status line only the ledger knows", args: []string{"status", "--config", cfg, "--line", "line0"}, code: exitOK,
			stdout: "station bench-t, line line0"},
		{name: "status negative batch", args: []string{"status", "--config", cfg, "--batch", "-1"}, code: exitUsage, noStdout: true,
			stderr: []string{"want a batch id"}},
		{name: "assertions unknown line", args: []string{"assertions", "--config", cfg, "--line", "nope"}, code: exitNoMatch, noStdout: true,
			stderr: []string{`no line "nope"`, "known lines (line1, line0)"}},
		{name: "assertions unknown serial", args: []string{"assertions", "--config", cfg, "--serial", "NOPE"}, code: exitNoMatch, noStdout: true,
			stderr: []string{"matches serial NOPE", "Check the serial"}},
		{name: "assertions nothing since", args: []string{"assertions", "--config", cfg, "--since", "2999-01-01"}, code: exitNoMatch, noStdout: true,
			stderr: []string{"received since 2999-01-01", "Widen the selection"}},
		{name: "assertions known serial", args: []string{"assertions", "--config", cfg, "--serial", "ACME-0001"}, code: exitOK,
			stdout: "serial: ACME-0001", stderr: []string{"1 serial assertion"}},
		{name: "export unknown batch", args: []string{"export", "--config", cfg, "--batch", "99"}, code: exitNoMatch, noStdout: true,
			stderr: []string{"no batch 99", "recorded batches (1, 2)"}},
		{name: "export unknown batch json", args: []string{"export", "--config", cfg, "--batch", "99", "--format", "json"}, code: exitNoMatch,
			reason: reasonNoMatch},
		{name: "export known batch", args: []string{"export", "--config", cfg, "--batch", "1", "--format", "json"}, code: exitOK,
			stdout: `"hardware_serial": "HW-0001"`},
		{name: "status nothing in the window", args: []string{"status", "--config", cfg, "--since", "2999-01-01", "--json"}, code: exitNoMatch,
			reason: reasonNoMatch, stderr: []string{"no unit matches", "Widen --since/--until"}},
		{name: "status by verdict", args: []string{"status", "--config", cfg, "--verdict", "pass", "--json"}, code: exitOK, stdout: `"passed": 1`},
		{name: "status unknown verdict", args: []string{"status", "--config", cfg, "--verdict", "meh"}, code: exitUsage, noStdout: true,
			stderr: []string{"want pass, fail, error, aborted or running"}},
		{name: "status until before since", args: []string{"status", "--config", cfg, "--since", "1h", "--until", "2h"}, code: exitUsage,
			noStdout: true, stderr: []string{"is not after --since"}},
		{name: "export no unit of that verdict", args: []string{"export", "--config", cfg, "--verdict", "aborted"}, code: exitNoMatch,
			noStdout: true, stderr: []string{"no unit matches"}},
		{name: "export by line and window", args: []string{"export", "--config", cfg, "--line", "line1", "--since", "2000-01-01", "--format", "json"},
			code: exitOK, stdout: `"hardware_serial": "HW-0001"`},
		{name: "logs unknown serial", args: []string{"logs", "NOPE", "--config", cfg}, code: exitNoMatch, noStdout: true,
			stderr: []string{"no unit with serial NOPE", "'flashstation export' lists every unit"}},
		{name: "logs known serial", args: []string{"logs", "ACME-0001", "--config", cfg}, code: exitOK, stdout: "board HW-0001"},

		// Usage and configuration: exit 2 with what to do.
		{name: "unwritable bundle", args: []string{"logs", "HW-0001", "--config", cfg, "--bundle", dir + "/no/such/dir/qa.tar.gz"}, code: exitUsage,
			noStdout: true, stderr: []string{"--bundle", "existing directory this user can write to"}},
		{name: "run with an unset secret", args: []string{"run", "--headless", "--config", envCfg}, code: exitUsage, noStdout: true,
			stderr: []string{unsetPasswordEnv + " is not set", "Set the variable in the station's environment"}},
		{name: "run with an unset secret json", args: []string{"run", "--headless", "--json", "--config", envCfg}, code: exitUsage,
			reason: reasonConfig, stderr: []string{unsetPasswordEnv}},
		{name: "flash a missing image json", args: []string{"flash", "--json", "--cache", dir + "/cache", "/nope.img", dir + "/t.img"}, code: exitUsage,
			reason: reasonUsage, stderr: []string{"/nope.img", "Check the IMAGE path"}},
		{name: "watch non-standard baud", args: []string{"watch", "--port", "/dev/null", "--baud", "1234"}, code: exitUsage, noStdout: true,
			stderr: []string{"--baud 1234 is not a standard baud rate", "115200 is usual", "57600"}},
		{name: "watch non-standard baud json", args: []string{"watch", "--port", "/dev/null", "--baud", "1234", "--json"}, code: exitUsage,
			reason: reasonUsage},
		{name: "watch unwritable transcript json", args: []string{"watch", "--port", "/dev/null", "--transcript", dir + "/no/such/boot.raw", "--json"},
			code: exitUsage, reason: reasonUsage, stderr: []string{"--transcript", "existing directory"}},
		{name: "watch unknown profile json", args: []string{"watch", "--port", "/dev/null", "--profile", "uc99", "--json"}, code: exitUsage,
			reason: reasonUsage, stderr: []string{"uc99"}},
		{name: "station file from FLASHSTATION_CONFIG missing", args: []string{"status"}, env: map[string]string{"FLASHSTATION_CONFIG": dir + "/none.yaml"},
			code: exitUsage, noStdout: true, stderr: []string{"(from FLASHSTATION_CONFIG) does not exist", "--config FILE", "'flashstation demo'"}},
		{name: "station file from --config missing json", args: []string{"status", "--json", "--config", dir + "/none.yaml"}, code: exitUsage,
			reason: reasonConfig, stderr: []string{"none.yaml does not exist", "FLASHSTATION_CONFIG=FILE"}},
		{name: "assertions without --config", args: []string{"assertions"}, code: exitUsage, noStdout: true,
			stderr: []string{"--config FILE is required", "flashstation demo"}},
		{name: "unknown flag json", args: []string{"status", "--frob", "--json"}, code: exitUsage, reason: reasonUsage,
			stderr: []string{"unknown flag: --frob", "Usage: flashstation status"}},
		{name: "run on a data directory in use", args: []string{"run", "--headless", "--config", envCfg}, held: true, code: exitUsage, noStdout: true,
			stderr: []string{"data directory " + dir + "/data in use by pid ", " since ", "Stop the station that runs on it first"}},
		{name: "run on a data directory in use json", args: []string{"run", "--headless", "--json", "--config", envCfg}, held: true, code: exitUsage,
			reason: reasonConfig, stderr: []string{"in use by pid "}},
		{name: "status beside a station", args: []string{"status", "--config", cfg, "--json"}, held: true, code: exitOK, stdout: `"passed": 1`},
		{name: "bad export format json", args: []string{"export", "--config", cfg, "--format=json", "--batch", "x"}, code: exitUsage, reason: reasonUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, strings.ReplaceAll(v, dir, f.dir))
			}
			if tc.held {
				lock, err := datadir.Acquire(filepath.Join(f.dir, "data"))
				if err != nil {
					t.Fatal(err)
				}
				defer lock.Close()
			}
			args := make([]string, len(tc.args))
			for i, a := range tc.args {
				a = strings.ReplaceAll(a, envCfg, f.envConfig)
				a = strings.ReplaceAll(a, cfg, f.config)
				args[i] = strings.ReplaceAll(a, dir, f.dir)
			}
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			if got := exitCode(err); got != tc.code {
				t.Errorf("exit code %d, want %d (err %v)\nstderr: %s", got, tc.code, err, stderr.String())
			}
			if tc.noStdout && stdout.Len() > 0 {
				t.Errorf("unexpected stdout: %s", stdout.String())
			}
			if tc.stdout != "" && !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, stdout.String())
			}
			if tc.reason != "" {
				body := errorDocument(t, stdout.String())
				if body.Code != tc.code || body.Reason != tc.reason {
					t.Errorf("error document code %d reason %q, want %d %q", body.Code, body.Reason, tc.code, tc.reason)
				}
				if body.Hint == "" || !strings.Contains(stderr.String(), body.Message) {
					t.Errorf("error document %+v: want a hint, and the message on stderr too:\n%s", body, stderr.String())
				}
			}
			for _, s := range tc.stderr {
				if s = strings.ReplaceAll(s, dir, f.dir); !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
		})
	}
}

// TestMissingDefaultStationFile: with neither --config nor
// FLASHSTATION_CONFIG, the default station file is missing here; the error
// names all three ways out.
func TestMissingDefaultStationFile(t *testing.T) {
	if _, err := os.Stat(defaultStationFile); err == nil {
		t.Skipf("%s exists on this machine", defaultStationFile)
	}
	t.Setenv("FLASHSTATION_CONFIG", "")
	for _, args := range [][]string{{"status"}, {"export"}, {"logs", "X"}, {"run", "--headless"}, {"status", "--json"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			if code := exitCode(err); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			for _, want := range []string{"no --config given", "FLASHSTATION_CONFIG", defaultStationFile, "--config FILE", "'flashstation demo'"} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if slices.Contains(args, "--json") {
				if body := errorDocument(t, stdout.String()); body.Reason != reasonConfig {
					t.Errorf("reason %q", body.Reason)
				}
			} else if stdout.Len() > 0 {
				t.Errorf("unexpected stdout: %s", stdout.String())
			}
		})
	}
}

// TestJSONErrorOnlyWhenNothingPrinted: a --json command that printed its
// own document and then failed (a failed verdict) gets no second one.
func TestJSONErrorOnlyWhenNothingPrinted(t *testing.T) {
	for _, tc := range []struct {
		name     string
		printed  string
		err      error
		asJSON   bool
		wantDocs int
		wantErr  bool // the message on stderr
	}{
		{"json, nothing printed", "", usageErrorf("bad"), true, 1, true},
		{"json, own document printed", "{\"verdict\": \"fail\"}\n", reported(exitVerdict, errors.New("boot failed")), true, 1, false},
		{"not json", "", noMatch("hint", "none"), false, 0, true},
		{"json, plain error", "", errors.New("disk on fire"), true, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			tw := &trackedWriter{w: &out}
			tw.Write([]byte(tc.printed))
			ee, ok := tc.err.(*exitError)
			if !ok {
				ee = &exitError{code: exitVerdict, err: tc.err}
			}
			printError(tc.err, ee, tc.asJSON, tw, &errOut)
			docs := 0
			for dec := json.NewDecoder(&out); ; docs++ {
				var v any
				if err := dec.Decode(&v); err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatalf("stdout: %v", err)
					}
					break
				}
			}
			if docs != tc.wantDocs {
				t.Errorf("%d JSON documents on stdout, want %d", docs, tc.wantDocs)
			}
			if got := strings.Contains(errOut.String(), tc.err.Error()); got != tc.wantErr {
				t.Errorf("stderr %q: message printed %v, want %v", errOut.String(), got, tc.wantErr)
			}
		})
	}
}

func TestWantsJSON(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"status", "--json"}, true},
		{[]string{"status", "--json=false"}, false},
		{[]string{"status"}, false},
		{[]string{"export", "--format", "json"}, true},
		{[]string{"export", "--format=json"}, true},
		{[]string{"export", "--format", "csv"}, false},
		{[]string{"logs", "--", "--json"}, false},
	} {
		// As cobra leaves it when it refused the line: no flag parsed.
		if got := wantsJSON(nil, tc.args); got != tc.want {
			t.Errorf("wantsJSON(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
	cmd := &cobra.Command{Use: "x"}
	cmd.Flags().Bool("json", false, "")
	if err := cmd.ParseFlags([]string{"--json=false"}); err != nil {
		t.Fatal(err)
	}
	if wantsJSON(cmd, []string{"--json=false"}) {
		t.Error("--json=false parsed: want no JSON")
	}
}

// TestProcessExitStatus checks the status the process itself exits with
// (main's os.Exit), for each code of the contract.
func TestProcessExitStatus(t *testing.T) {
	f := newBenchFixture(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"config", "check", f.config}, exitOK},
		{[]string{"assertion", "verify", f.config}, exitVerdict},
		{[]string{"watch", "--port", "/dev/null", "--baud", "1234"}, exitUsage},
		{[]string{"status", "--config", f.config, "--batch", "99"}, exitNoMatch},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(tc.args, "\x1f"))
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("process exit status %d, want %d", code, tc.code)
			}
		})
	}
}
