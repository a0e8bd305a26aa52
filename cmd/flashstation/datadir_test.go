package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flashstation/flashstation/internal/datadir"
)

// TestOneStationPerDataDir runs a station command (vault proxy) in a
// second process on the fixture's data directory: every command that runs
// the station there is refused with exit 2 naming that process, the
// reading commands work beside it, and once it is killed the lock file it
// left blocks nothing.
func TestOneStationPerDataDir(t *testing.T) {
	f := newBenchFixture(t)
	data := filepath.Join(f.dir, "data")
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}

	args := []string{"vault", "proxy", "--config", f.config, "--line", "line1", "--listen", "127.0.0.1:0", "--expect", "ACME-0002"}
	holder := exec.Command(os.Args[0], "-test.run=^$")
	holder.Env = append(os.Environ(), childEnv+"="+strings.Join(args, "\x1f"))
	stderr := &syncBuffer{}
	holder.Stderr = stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	waitFor(t, stderr, `proxy for line line1 listening on`)
	pid := holder.Process.Pid

	inUse := regexp.MustCompile(fmt.Sprintf(`data directory %s in use by pid %d on %s since (\S+)\n`,
		regexp.QuoteMeta(data), pid, regexp.QuoteMeta(host)))
	station, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"run", "--headless", "--config", f.config},
		{"run", "--headless", "--batch-size", "1", "--config", f.envConfig}, // refused before its secrets are read
		{"vault", "proxy", "--config", f.config, "--line", "line1", "--listen", "127.0.0.1:0", "--expect", "ACME-0003"},
		{"demo", "--data", f.dir, "--headless", "--fast-keys"}, // the demo's station keeps DIR/data
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			// In the background: were it not refused, it would run (and the
			// ceiling of wait fail it).
			bg := start(t, args...)
			code := exitCode(bg.wait(t))
			stdout, errOut := bg.stdout.String(), bg.stderr.String()
			if code != exitUsage {
				t.Errorf("exit %d, want %d\n%s", code, exitUsage, errOut)
			}
			m := inUse.FindStringSubmatch(errOut)
			if m == nil {
				t.Fatalf("stderr does not match %s:\n%s", inUse, errOut)
			}
			if _, err := time.Parse(time.RFC3339, m[1]); err != nil {
				t.Errorf("since %q: %v", m[1], err)
			}
			if !strings.Contains(errOut, "Stop the") || !strings.Contains(errOut, "work beside") {
				t.Errorf("no hint:\n%s", errOut)
			}
			if strings.Contains(stdout, "recorded") || strings.Contains(errOut, "building a simulated bench") {
				t.Errorf("the refused command went on:\n%s\n%s", stdout, errOut)
			}
		})
	}
	if now, err := os.ReadFile(f.config); err != nil || !bytes.Equal(now, station) {
		t.Errorf("the refused demo rewrote %s (%v)", f.config, err)
	}

	t.Run("run json", func(t *testing.T) {
		code, stdout, errOut := runCmd("run", "--headless", "--json", "--config", f.envConfig)
		body := errorDocument(t, stdout)
		if code != exitUsage || body.Code != exitUsage || body.Reason != reasonConfig || !inUse.MatchString(body.Message+"\n") || body.Hint == "" {
			t.Errorf("exit %d, error document %+v\n%s", code, body, errOut)
		}
	})

	// The reading commands take no lock: they work beside the station.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "--config", f.config}, "station bench-t"},
		{[]string{"status", "--config", f.config, "--json"}, `"passed": 1`},
		{[]string{"logs", "ACME-0001", "--config", f.config}, "board HW-0001"},
		{[]string{"export", "--config", f.config, "--format", "json"}, `"hardware_serial": "HW-0001"`},
		{[]string{"assertions", "--config", f.config, "--serial", "ACME-0001"}, "serial: ACME-0001"},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			code, stdout, errOut := runCmd(tc.args...)
			if code != exitOK || !strings.Contains(stdout, tc.want) {
				t.Errorf("exit %d, stdout lacks %q:\n%s\n%s", code, tc.want, stdout, errOut)
			}
		})
	}

	// Killed, the holder leaves its lock file naming it; the kernel has
	// dropped its flock, so the next station gets past the lock (to the
	// secret it misses) and releases it when it ends.
	if err := holder.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait()
	left, err := os.ReadFile(filepath.Join(data, datadir.FileName))
	if err != nil || !strings.Contains(string(left), fmt.Sprintf("pid %d\n", pid)) {
		t.Fatalf("the killed holder's lock file: %q %v", left, err)
	}
	code, _, errOut := runCmd("run", "--headless", "--config", f.envConfig)
	if code != exitUsage || !strings.Contains(errOut, unsetPasswordEnv+" is not set") || strings.Contains(errOut, "in use") {
		t.Errorf("after the holder was killed: exit %d\n%s", code, errOut)
	}
	lock, err := datadir.Acquire(data)
	if err != nil {
		t.Fatalf("the ended run still holds the data directory: %v", err)
	}
	lock.Close()
}

// TestREADMEDataDirLock keeps README's example refusal the program's: the
// message as a station prints it, and the hint for the default station
// file.
func TestREADMEDataDirLock(t *testing.T) {
	section := strings.Join(readmeSection(t, string(mustRead(t, readmePath)), "Data directory"), "\n")
	e := &datadir.InUseError{Dir: "/srv/flashstation", Known: true,
		Holder: datadir.Holder{PID: 4242, Host: "bench-1", Since: time.Date(2026, 3, 2, 8, 15, 0, 0, time.FixedZone("", 3600))}}
	for _, want := range []string{"flashstation: " + e.Error() + "\n" + stationInUseHint(defaultStationFile) + "\n", "DATA/" + datadir.FileName} {
		if !strings.Contains(section, want) {
			t.Errorf("README's Data directory section lacks\n%s", want)
		}
	}
}
