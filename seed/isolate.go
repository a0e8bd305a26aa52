package seed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flashstation/flashstation/serialvault"
)

// ReaderArg is the first argument of a child process that reads one
// image's seed for ReadIsolated (the second is the image's path).
const ReaderArg = "__flashstation-seed-read"

// Bounds of the reader's child process: the file system library meets
// images from outside, and a damaged one can make it loop (a FAT cluster
// chain that comes back on itself) or allocate without end.
const (
	childMemory  = 2 << 30 // its address space
	childCPU     = 60      // seconds of CPU
	childTimeout = 2 * time.Minute
	childOutput  = 32 << 20 // what it may print
)

var hooked atomic.Bool

// ReaderMain makes this binary the reader's child when it was started as
// one (ReaderArg PATH): it reads the image under its bounds, prints what
// it found and exits. Otherwise it returns, and ReadIsolated then reads
// in a child process. Call it first thing in main (and in TestMain).
func ReaderMain() {
	if len(os.Args) != 3 || os.Args[1] != ReaderArg {
		hooked.Store(true)
		return
	}
	_ = syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: childMemory, Max: childMemory})
	_ = syscall.Setrlimit(syscall.RLIMIT_CPU, &syscall.Rlimit{Cur: childCPU, Max: childCPU + 1})
	debug.SetMemoryLimit(childMemory / 2)
	var w wireImage
	img, err := Read(context.Background(), os.Args[2])
	if err != nil {
		w.Err = err.Error()
	} else {
		w.Image = img
		if img.Seed != nil {
			w.Model = img.Seed.ModelBytes
			for _, a := range img.Seed.Assertions {
				w.Assertions = append(w.Assertions, a.Encode())
			}
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(w); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// wireImage is what the child sends back: the Image and the bytes its
// JSON leaves out (the model and the other assertions), decoded again by
// the parent.
type wireImage struct {
	Image      *Image   `json:"image,omitempty"`
	Model      []byte   `json:"model,omitempty"`
	Assertions [][]byte `json:"assertions,omitempty"`
	Err        string   `json:"error,omitempty"`
}

// ReadIsolated is Read in a child process of this binary, bounded in
// memory, CPU and time, when the binary called ReaderMain (else Read
// itself). A child that dies or runs out of its bounds gives an Image
// whose Failed says so: the gate refuses it as unreadable.
func ReadIsolated(ctx context.Context, path string) (*Image, error) {
	if !hooked.Load() {
		return Read(ctx, path)
	}
	// /proc/self/exe is this binary even once an upgrade replaced its
	// file.
	exe := "/proc/self/exe"
	if _, err := os.Stat(exe); err != nil {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("seed: the reader's child: %w", err)
		}
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, childTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, exe, ReaderArg, path)
	// The child needs nothing of the station's environment (its secrets
	// among it).
	cmd.Env = []string{"LANG=C.UTF-8"}
	if d := os.Getenv("GOCOVERDIR"); d != "" {
		cmd.Env = append(cmd.Env, "GOCOVERDIR="+d)
	}
	var out, errOut limitedBuffer
	out.max, errOut.max = childOutput, 4<<10
	cmd.Stdout, cmd.Stderr = &out, &errOut
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	failed := func(why string) (*Image, error) {
		img := &Image{Path: path, Failed: why}
		if st, err := os.Stat(path); err == nil {
			img.Size = st.Size()
		}
		return img, nil
	}
	switch {
	case cctx.Err() != nil:
		return failed(fmt.Sprintf("reading its file systems took longer than %s (a damaged file system that loops, or a station too busy: try again)", childTimeout))
	case runErr != nil:
		// A Go runtime that ran out of its bounds says so first
		// ("fatal error: out of memory").
		return failed(fmt.Sprintf("the reader stopped (%v) on its file systems: %s", runErr, firstLine(strings.TrimSpace(errOut.String()))))
	case out.over:
		return failed("the reader's answer was larger than the station takes")
	}
	var w wireImage
	if err := json.Unmarshal(out.Bytes(), &w); err != nil {
		return failed(fmt.Sprintf("the reader's answer does not decode: %v", err))
	}
	if w.Err != "" {
		return nil, errors.New(w.Err)
	}
	if w.Image == nil {
		return failed("the reader answered nothing")
	}
	img := w.Image
	if s := img.Seed; s != nil {
		s.ModelBytes = w.Model
		if len(w.Model) > 0 && s.ModelErr == "" {
			s.Model, s.ModelErr = decodeModel(w.Model)
		}
		for _, b := range w.Assertions {
			if a, err := serialvault.Decode(b); err == nil {
				s.Assertions = append(s.Assertions, a)
			}
		}
	}
	return img, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return "no message"
	}
	return s
}

// limitedBuffer keeps at most max bytes and says whether more came.
type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

var _ io.Writer = (*limitedBuffer)(nil)
