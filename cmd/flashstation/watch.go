package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashstation/flashstation/console"
	"github.com/flashstation/flashstation/lines"
)

func newWatchCommand(stdout, stderr io.Writer) *cobra.Command {
	var o struct {
		port, profile, transcript string
		baud                      int
		json, follow              bool
	}
	cmd := &cobra.Command{
		Use:   "watch --port PATH [--profile NAME|FILE] [--baud N] [--transcript FILE] [--json]",
		Short: "Watch one first boot on a serial console; exit 0 when the console is ready",
		Long: `Watch a board's first boot on its serial console, stage by stage (bootloader,
install boot, run boot, seeding, console ready for the uc20 profile), without
writing a byte to it. Exit 0 when the console is ready; otherwise exit 1 with
a reason code (no-output, baud-mismatch, bootloader-error, kernel-panic,
boot-loop, seed-error, stage-timeout, boot-timeout, console-unplugged,
port-busy, port-missing, port-permission) and the last console lines.

PATH is a device (/dev/ttyUSB0, /dev/serial/by-id/...) or the USB port path of
the adapter (1-1.4.2). --transcript keeps the raw bytes with their times.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.port == "" {
				return usageHint(errors.New("--port PATH is required"),
					"Give the console's device (/dev/ttyUSB0, /dev/serial/by-id/...) or its USB port path; 'flashstation devices' lists them.")
			}
			if !slices.Contains(lines.StandardBauds, o.baud) {
				return usageHint(fmt.Errorf("--baud %d is not a standard baud rate", o.baud), standardBaudHint())
			}
			p, err := console.LoadProfile(o.profile)
			if err != nil {
				return usageHint(fmt.Errorf("--profile: %w", err), "Give uc16, uc18, uc20, uc22, uc24 or a profile .yaml file.")
			}
			return runWatch(cmd.Context(), o.port, o.baud, p, o.transcript, o.json, o.follow, stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.port, "port", "", "console device or USB port path")
	f.StringVar(&o.profile, "profile", "uc20", "boot profile: uc16, uc18, uc20, uc22, uc24 or a .yaml file")
	f.IntVar(&o.baud, "baud", lines.DefaultBaud, "baud rate (8N1): a standard rate, the same that config check accepts")
	f.StringVar(&o.transcript, "transcript", "", "write the raw console transcript to FILE")
	f.BoolVar(&o.json, "json", false, "print one JSON document on stdout")
	f.BoolVar(&o.follow, "follow", false, "print the console lines as they come")
	return cmd
}

// standardBaudHint lists the rates --baud takes: those a station file's
// slots may use.
func standardBaudHint() string {
	rates := make([]string, len(lines.StandardBauds))
	for i, b := range lines.StandardBauds {
		rates[i] = strconv.Itoa(b)
	}
	return fmt.Sprintf("Use one of %s (%d is usual).", strings.Join(rates, ", "), lines.DefaultBaud)
}

type watchJSON struct {
	Verdict    string      `json:"verdict"`
	Reason     string      `json:"reason,omitempty"`
	Detail     string      `json:"detail,omitempty"`
	Stages     []stageJSON `json:"stages"`
	Elapsed    float64     `json:"elapsed_seconds"`
	Transcript string      `json:"transcript,omitempty"`
	LastLines  []string    `json:"last_lines,omitempty"`
}

type stageJSON struct {
	Name    string  `json:"name"`
	At      float64 `json:"at_seconds"`
	Skipped bool    `json:"skipped,omitempty"`
}

func runWatch(ctx context.Context, port string, baud int, p *console.Profile, transcript string, asJSON, follow bool, stdout io.Writer) error {
	var tr *console.Transcript
	if transcript != "" {
		var err error
		if tr, err = console.CreateTranscript(transcript); err != nil {
			return usageHint(fmt.Errorf("--transcript %s: %w", transcript, err),
				"Give --transcript a path in an existing directory this user can write to.")
		}
		defer tr.Close()
	}
	start := time.Now()
	con, err := console.OpenConsole(ctx, &console.Capture{Path: port, Baud: baud, Transcript: tr})
	var v console.Verdict
	if err != nil {
		var pe *console.PortError
		if !errors.As(err, &pe) {
			return err
		}
		v = console.Verdict{Reason: pe.Reason, Detail: err.Error()}
	} else {
		defer con.Close()
		v = con.WatchBoot(ctx, p, start, func(e console.Event) {
			if asJSON {
				return
			}
			switch e.Kind {
			case console.EventStage:
				what := "reached"
				if e.Skipped {
					what = "skipped"
				}
				fmt.Fprintf(stdout, "%8.1fs  %s %s\n", e.At.Seconds(), e.Stage, what)
			case console.EventGap:
				fmt.Fprintf(stdout, "%8.1fs  -- %s --\n", e.At.Seconds(), e.Detail)
			case console.EventLine:
				if follow {
					fmt.Fprintf(stdout, "%8.1fs  | %s\n", e.At.Seconds(), e.Line)
				}
			}
		})
	}
	if asJSON {
		doc := watchJSON{Verdict: "pass", Reason: v.Reason, Detail: v.Detail, Elapsed: round3(v.Elapsed.Seconds()),
			Transcript: transcript, Stages: []stageJSON{}}
		if !v.Passed {
			doc.Verdict = "fail"
			doc.LastLines = v.LastLines
		}
		for _, s := range v.Stages {
			doc.Stages = append(doc.Stages, stageJSON{Name: s.Name, At: round3(s.At.Seconds()), Skipped: s.Skipped})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return err
		}
	} else if v.Passed {
		fmt.Fprintf(stdout, "PASS console ready after %s\n", v.Elapsed.Round(100*time.Millisecond))
	} else {
		fmt.Fprintf(stdout, "FAIL %s: %s\n", v.Reason, v.Detail)
		if len(v.LastLines) > 0 {
			fmt.Fprintln(stdout, "last console lines:")
			for _, l := range v.LastLines {
				fmt.Fprintf(stdout, "  | %s\n", l)
			}
		}
	}
	if !v.Passed {
		return reported(exitVerdict, fmt.Errorf("boot failed: %s", v.Reason))
	}
	return nil
}
