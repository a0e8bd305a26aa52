package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Target kinds.
const (
	kindFile      = "file"      // a fresh regular file on the bench dir's filesystem
	kindLoop      = "loop"      // losetup --direct-io=on over a fresh sparse file
	kindThrottled = "throttled" // a direct-io loop, its I/O limited to 25 MB/s
)

// throttleRate is the throttled targets' speed, bytes per second, each way.
const throttleRate = 25_000_000

// target is one fresh target of one run.
type target struct {
	path    string // what the tool is given
	backing string // the file behind a loop device, else path
	dev     string // loopN, or ""
	majMin  string // "7:N", or ""
}

// env is what the machine offers and what the bench made on it; cleanup
// undoes it (loop devices, cgroups, target files), also on error and signal.
type env struct {
	dir       string
	loop      bool   // losetup --direct-io=on works
	loopNote  string // why not
	cgroup    string // "v2 io.max", "v1 blkio.throttle", or ""
	cgRoot    string // the parent directory of our cgroups
	throttle  string // how throttled targets are throttled (for the table)
	cgNote    string
	noCgroup  bool // -throttle flashstation: do not try cgroups
	mu        sync.Mutex
	loops     map[string]bool // attached devices
	cgroups   []string
	running   map[*os.Process]bool
	seq       int
	cleanOnce sync.Once
}

func newEnv(dir string) *env {
	return &env{dir: dir, loops: map[string]bool{}, running: map[*os.Process]bool{}}
}

func (e *env) next() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	return e.seq
}

// detect finds out whether direct-io loop devices and an I/O-throttling
// cgroup controller are available.
func (e *env) detect() {
	if os.Geteuid() != 0 {
		e.loopNote = "not root"
		return
	}
	t, err := e.newLoop()
	if err != nil {
		e.loopNote = err.Error()
		return
	}
	e.loop = true
	defer e.release([]target{t})
	if e.noCgroup {
		e.cgNote = "-throttle flashstation"
		return
	}
	// cgroup v2 with the io controller, else v1 blkio.
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err != nil || !hasWord(string(b), "io") {
			continue
		}
		dir := filepath.Join(root, fmt.Sprintf("flashbench-%d", os.Getpid()))
		if os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+io"), 0) != nil {
			continue
		}
		if os.Mkdir(dir, 0o755) == nil {
			e.cgroups = append(e.cgroups, dir)
			// The per-run children get io.max only when their parent
			// (ours, without processes) delegates the controller.
			if os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+io"), 0) != nil {
				continue
			}
			e.cgroup, e.cgRoot = "v2 io.max", dir
			break
		}
	}
	if e.cgroup == "" {
		if _, err := os.Stat("/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device"); err == nil {
			dir := filepath.Join("/sys/fs/cgroup/blkio", fmt.Sprintf("flashbench-%d", os.Getpid()))
			if os.Mkdir(dir, 0o755) == nil {
				e.cgroups = append(e.cgroups, dir)
				e.cgroup, e.cgRoot = "v1 blkio.throttle", dir
			}
		}
	}
	if e.cgroup == "" {
		e.cgNote = "no cgroup io/blkio controller"
		return
	}
	// Verify by measuring: 50 MB written with O_DIRECT, then 50 MB
	// buffered + fsync (as bmaptool writes), in a throttled cgroup.
	t2, err := e.newLoop()
	if err != nil {
		e.cgNote = err.Error()
		e.cgroup = ""
		return
	}
	defer e.release([]target{t2})
	cg, err := e.newCgroup([]target{t2})
	if err != nil {
		e.cgNote = err.Error()
		e.cgroup = ""
		return
	}
	rate := func(flag string) float64 {
		start := time.Now()
		args := []string{"if=/dev/zero", "of=" + t2.path, "bs=1M", "count=50", flag, "status=none"}
		if out, err := exec.Command("sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, cg.procs, "dd"}, args...)...).CombinedOutput(); err != nil {
			e.cgNote = fmt.Sprintf("dd in cgroup: %v %s", err, out)
			return 0
		}
		return 50 * mib / time.Since(start).Seconds() / 1e6
	}
	direct, buffered := rate("oflag=direct"), rate("conv=fsync")
	cg.remove()
	if direct == 0 || buffered == 0 {
		e.cgroup = ""
		return
	}
	if direct > 1.4*throttleRate/1e6 {
		e.cgNote = fmt.Sprintf("cgroup %s does not throttle loop devices here (O_DIRECT %.0f MB/s)", e.cgroup, direct)
		e.cgroup = ""
		return
	}
	e.throttle = fmt.Sprintf("cgroup %s %s wbps=rbps=25MB/s per loop device (calibrated: O_DIRECT %.1f MB/s, buffered+fsync %.1f MB/s)", e.cgroup, "child per run,", direct, buffered)
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// newFile is a fresh regular-file target: it does not exist yet (both
// tools create it), so its allocated blocks start at zero.
func (e *env) newFile() target {
	p := filepath.Join(e.dir, "targets", fmt.Sprintf("t%d.img", e.next()))
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.Remove(p)
	return target{path: p, backing: p}
}

// newLoop is a direct-io loop device over a fresh sparse file of the
// image's size.
func (e *env) newLoop() (target, error) {
	p := filepath.Join(e.dir, "targets", fmt.Sprintf("loop%d.img", e.next()))
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.Remove(p)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		return target{}, err
	}
	if err := os.Truncate(p, imageSize); err != nil {
		return target{}, err
	}
	out, err := exec.Command("losetup", "--direct-io=on", "--find", "--show", p).CombinedOutput()
	if err != nil {
		os.Remove(p)
		return target{}, fmt.Errorf("losetup --direct-io=on: %v %s", err, strings.TrimSpace(string(out)))
	}
	dev := strings.TrimSpace(string(out))
	e.mu.Lock()
	e.loops[dev] = true
	e.mu.Unlock()
	name := filepath.Base(dev)
	if b, err := os.ReadFile("/sys/block/" + name + "/loop/dio"); err != nil || strings.TrimSpace(string(b)) != "1" {
		e.release([]target{{path: dev, backing: p, dev: name}})
		return target{}, fmt.Errorf("%s: direct-io not enabled by losetup", dev)
	}
	mm, err := os.ReadFile("/sys/block/" + name + "/dev")
	if err != nil {
		return target{}, err
	}
	return target{path: dev, backing: p, dev: name, majMin: strings.TrimSpace(string(mm))}, nil
}

// newTargets makes n fresh targets of a kind.
func (e *env) newTargets(kind string, n int) ([]target, error) {
	var ts []target
	for range n {
		if kind == kindFile {
			ts = append(ts, e.newFile())
			continue
		}
		t, err := e.newLoop()
		if err != nil {
			e.release(ts)
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// release detaches and deletes targets.
func (e *env) release(ts []target) {
	for _, t := range ts {
		if t.dev != "" {
			detach(t.path)
			e.mu.Lock()
			delete(e.loops, t.path)
			e.mu.Unlock()
		}
		os.Remove(t.backing)
	}
}

func detach(dev string) {
	for i := 0; i < 20; i++ {
		if exec.Command("losetup", "-d", dev).Run() == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cgroup is one child cgroup that throttles one run's targets.
type cgroup struct {
	dir, procs string
	e          *env
}

func (e *env) newCgroup(ts []target) (*cgroup, error) {
	dir := filepath.Join(e.cgRoot, fmt.Sprintf("run-%d", e.next()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.cgroups = append(e.cgroups, dir)
	e.mu.Unlock()
	c := &cgroup{dir: dir, procs: filepath.Join(dir, "cgroup.procs"), e: e}
	for _, t := range ts {
		var err error
		if e.cgroup == "v2 io.max" {
			err = os.WriteFile(filepath.Join(dir, "io.max"), fmt.Appendf(nil, "%s wbps=%d rbps=%d", t.majMin, throttleRate, throttleRate), 0)
		} else {
			err = os.WriteFile(filepath.Join(dir, "blkio.throttle.write_bps_device"), fmt.Appendf(nil, "%s %d", t.majMin, throttleRate), 0)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, "blkio.throttle.read_bps_device"), fmt.Appendf(nil, "%s %d", t.majMin, throttleRate), 0)
			}
		}
		if err != nil {
			c.remove()
			return nil, fmt.Errorf("throttle %s: %v", t.path, err)
		}
	}
	return c, nil
}

func (c *cgroup) remove() {
	for i := 0; i < 20; i++ {
		if err := syscall.Rmdir(c.dir); err == nil || os.IsNotExist(err) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wrap runs argv inside the cgroup (a shell that moves itself, then execs).
func (c *cgroup) wrap(argv []string) []string {
	if c == nil {
		return argv
	}
	return append([]string{"sh", "-c", `echo $$ > "$0" && exec "$@"`, c.procs}, argv...)
}

func (e *env) track(p *os.Process, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if on {
		e.running[p] = true
	} else {
		delete(e.running, p)
	}
}

// cleanup kills the running tools, detaches every loop device the bench
// attached, removes its cgroups and its target files.
func (e *env) cleanup() {
	e.cleanOnce.Do(func() {
		e.mu.Lock()
		procs := make([]*os.Process, 0, len(e.running))
		for p := range e.running {
			procs = append(procs, p)
		}
		loops := make([]string, 0, len(e.loops))
		for d := range e.loops {
			loops = append(loops, d)
		}
		cgs := append([]string(nil), e.cgroups...)
		e.mu.Unlock()
		for _, p := range procs {
			p.Kill()
		}
		if len(procs) > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		for _, d := range loops {
			detach(d)
		}
		for i := len(cgs) - 1; i >= 0; i-- {
			(&cgroup{dir: cgs[i]}).remove()
		}
		os.RemoveAll(filepath.Join(e.dir, "targets"))
	})
}

// written is how much a target has received so far: the loop device's
// written sectors, or a file's allocated 512-byte blocks.
func written(t target) int64 {
	if t.dev != "" {
		b, err := os.ReadFile("/sys/block/" + t.dev + "/stat")
		if err != nil {
			return 0
		}
		f := strings.Fields(string(b))
		if len(f) < 7 {
			return 0
		}
		n, _ := strconv.ParseInt(f[6], 10, 64)
		return n
	}
	var st syscall.Stat_t
	if syscall.Stat(t.path, &st) != nil {
		return 0
	}
	return st.Blocks
}
