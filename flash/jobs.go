package flash

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Job flashes one target: a block device, a regular file or a fastboot
// device.
type Job interface {
	Name() string
	Run(ctx context.Context, img *Prepared, o Options) Result
	Close() error
}

// Rebooter is a job that can restart its board (fastboot reboot).
type Rebooter interface {
	Reboot(ctx context.Context) error
}

// FastbootOpener opens the fastboot interface (class ff/42/03) of the USB
// device at a port path such as 1-1.4. The usb/libusb adapter is the
// real one; a flashstation built without cgo has one that always fails
// (libusb.ErrUnavailable).
type FastbootOpener interface {
	OpenFastboot(ctx context.Context, portPath string) (FastbootTransport, error)
}

// TargetOptions say how to open target specs.
type TargetOptions struct {
	Block BlockOptions
	// Partition is the fastboot partition (default mmc0); Reboot reboots a
	// fastboot device once flashed.
	Partition string
	Reboot    bool
	// Throttle limits named targets to bytes per second (labs, benchmarks,
	// the simulated bench's slow media).
	Throttle map[string]float64
	// USB opens fastboot:usb targets; nil: they cannot be opened.
	USB FastbootOpener
	// FastbootTimeout bounds each fastboot exchange (a command, a response
	// packet, a piece of download data); 0: 2 min. A board that answers
	// nothing for that long is hung and its job fails, naming the command.
	FastbootTimeout time.Duration
}

// Kinds of target spec.
const (
	targetFastbootTCP = iota + 1
	targetFastbootUSB
	targetBlock
	targetFile
)

// CheckTarget checks a target spec without opening it (nothing is
// created): fastboot:tcp:HOST:PORT and fastboot:usb:PORTPATH by form; a
// path in /dev (or leading there through symbolic links, such as
// /dev/disk/by-path/...) must be a block device, else the Failure's reason
// is no-device; another path must be a block device, a regular file, or
// missing (a lab file, created when flashed).
func CheckTarget(spec string) error {
	_, err := classifyTarget(spec)
	return err
}

func classifyTarget(spec string) (int, error) {
	switch {
	case strings.HasPrefix(spec, "fastboot:tcp:"):
		return targetFastbootTCP, nil
	case strings.HasPrefix(spec, "fastboot:usb:"):
		return targetFastbootUSB, nil
	case strings.HasPrefix(spec, "fastboot:"):
		return 0, &Failure{Reason: ReasonOpen, Offset: -1, Detail: fmt.Sprintf("%q: want fastboot:tcp:HOST:PORT or fastboot:usb:PORTPATH", spec)}
	case spec == "":
		return 0, &Failure{Reason: ReasonOpen, Offset: -1, Detail: "empty target"}
	}
	abs, resolved, exists, err := resolvePath(spec)
	if err != nil {
		return 0, &Failure{Reason: ReasonOpen, Offset: -1, Detail: err.Error(), Err: err}
	}
	if underDev(abs) || underDev(resolved) {
		if err := checkDevNode(spec, resolved, exists); err != nil {
			return 0, err
		}
		return targetBlock, nil
	}
	if !exists {
		return targetFile, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(resolved, &st); err != nil {
		return 0, &Failure{Reason: ReasonOpen, Offset: -1, Detail: fmt.Sprintf("%s: %v", spec, err), Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		return targetBlock, nil
	case unix.S_IFREG:
		return targetFile, nil
	}
	return 0, &Failure{Reason: ReasonOpen, Offset: -1, Detail: fmt.Sprintf("%s is neither a block device nor a regular file", spec)}
}

// OpenJob opens a target spec: fastboot:tcp:HOST:PORT, fastboot:usb:PORT,
// a block device, or a regular file (created when missing, never in /dev).
// The spec is checked first (CheckTarget): a refused one is left as it was.
func OpenJob(ctx context.Context, spec string, o TargetOptions) (Job, error) {
	kind, err := classifyTarget(spec)
	if err != nil {
		return nil, err
	}
	var t Target
	switch kind {
	case targetFastbootTCP:
		tr, err := DialFastbootTCP(ctx, strings.TrimPrefix(spec, "fastboot:tcp:"))
		if err != nil {
			return nil, &Failure{Reason: ReasonOpen, Offset: -1, Detail: err.Error(), Err: err}
		}
		return newFastbootJob(spec, tr, o), nil
	case targetFastbootUSB:
		if o.USB == nil {
			return nil, &Failure{Reason: ReasonOpen, Offset: -1, Detail: spec + ": USB fastboot not available (no USB access given)"}
		}
		tr, err := o.USB.OpenFastboot(ctx, strings.TrimPrefix(spec, "fastboot:usb:"))
		if err != nil {
			return nil, &Failure{Reason: ReasonOpen, Offset: -1, Detail: err.Error(), Err: err}
		}
		return newFastbootJob(spec, tr, o), nil
	case targetBlock:
		bt, err := OpenBlockTarget(spec, o.Block)
		if err != nil {
			return nil, err
		}
		t = bt
	default:
		ft, err := OpenFileTarget(spec)
		if err != nil {
			return nil, err
		}
		t = ft
	}
	if rate, ok := o.Throttle[spec]; ok && rate > 0 {
		t = Throttle(t, rate)
	}
	return &targetJob{t: t}, nil
}

// NewTargetJob makes a job of a target opened elsewhere (a simulated
// board's storage, a test's fake).
func NewTargetJob(t Target) Job { return &targetJob{t: t} }

type targetJob struct{ t Target }

func (j *targetJob) Name() string { return j.t.Name() }
func (j *targetJob) Close() error { return j.t.Close() }
func (j *targetJob) Run(ctx context.Context, img *Prepared, o Options) Result {
	return Write(ctx, img, j.t, o)
}

type fastbootJob struct {
	name string
	c    *FastbootClient
	o    TargetOptions
}

func newFastbootJob(name string, tr FastbootTransport, o TargetOptions) *fastbootJob {
	c := NewFastbootClient(tr)
	if o.FastbootTimeout > 0 {
		c.Timeout = o.FastbootTimeout
	}
	return &fastbootJob{name: name, c: c, o: o}
}

func (j *fastbootJob) Name() string { return j.name }

// Reboot restarts the fastboot device from its storage.
func (j *fastbootJob) Reboot(ctx context.Context) error {
	_, err := j.c.Command(ctx, "reboot")
	return err
}
func (j *fastbootJob) Close() error { return j.c.Close() }
func (j *fastbootJob) Run(ctx context.Context, img *Prepared, o Options) Result {
	res := FlashFastboot(ctx, img, j.c, FastbootFlashOptions{Partition: j.o.Partition, Name: j.name, Options: o})
	if res.Failure == nil && j.o.Reboot {
		if _, err := j.c.Command(ctx, "reboot"); err != nil {
			res.Failure = &Failure{Reason: ReasonFastboot, Offset: -1, Detail: "reboot: " + err.Error(), Err: err}
		}
	}
	return res
}

// RunJobs runs every job at once, each on its own; results are in the
// order of jobs. Their read-back buffers come from one pool (o.Buffers,
// else one of up to 4 per job and 64 in all, and at least one per job).
func RunJobs(ctx context.Context, img *Prepared, jobs []Job, o Options) []Result {
	if o.Buffers == nil {
		per := o.InFlight
		if per <= 0 {
			per = 4
		}
		o.Buffers = NewBufferPool(max(len(jobs), min(per*len(jobs), 64)))
	}
	results := make([]Result, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = j.Run(ctx, img, o)
			if results[i].Target == "" {
				results[i].Target = j.Name()
			}
		}()
	}
	wg.Wait()
	return results
}
