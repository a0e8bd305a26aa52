// Package pgcluster runs throwaway PostgreSQL clusters (the tests' and
// the factory demo's): Debian's server binaries, initdb into a directory,
// the server on a unix socket in that directory only (no TCP listener),
// run as an unprivileged user when started by root (PostgreSQL refuses
// root).
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// Cluster is a running throwaway cluster.
type Cluster struct {
	// URL reaches the cluster's database "flashstation" as its superuser,
	// over the unix socket.
	URL string
	// Dir holds the data directory and the socket.
	Dir string

	bin  string
	cred *syscall.Credential
	data string
}

// ErrNoServer is why Start skips: no PostgreSQL server binaries here.
var ErrNoServer = errors.New("no PostgreSQL server (Debian package postgresql; make deps installs it)")

// BinDir finds the newest /usr/lib/postgresql/N/bin that holds initdb.
func BinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(dirs, func(i, j int) bool {
		return version(dirs[i]) > version(dirs[j])
	})
	if len(dirs) == 0 {
		return "", ErrNoServer
	}
	return filepath.Dir(dirs[0]), nil
}

func version(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

// New initialises and starts a cluster under parent (which it makes
// readable by the server's user).
func New(parent string) (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	reapOrphans(bin)
	dir, err := os.MkdirTemp(parent, "pg-")
	if err != nil {
		return nil, err
	}
	// Who started it: a cluster whose starter died (a test killed by its
	// timeout) is stopped by the next New.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, bin: bin, data: filepath.Join(dir, "data")}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return nil, fmt.Errorf("pgcluster: running as root and no unprivileged user to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The server's user must reach its directory: each parent up to
		// the temporary directory searchable, the directory its own.
		for p := filepath.Dir(dir); p != "/" && p != "." && p != filepath.Clean(os.TempDir()); p = filepath.Dir(p) {
			fi, err := os.Stat(p)
			if err == nil && fi.Mode().Perm()&0o001 == 0 {
				_ = os.Chmod(p, fi.Mode().Perm()|0o001)
			}
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if err := c.run("initdb", "--pgdata", c.data, "--auth", "trust", "--username", "postgres", "--encoding", "UTF8", "--locale", "C", "--no-sync"); err != nil {
		return nil, err
	}
	// No TCP listener: the socket in dir only.
	if err := c.run("pg_ctl", "--pgdata", c.data, "--wait", "--timeout", "60", "--silent", "--log", filepath.Join(dir, "server.log"),
		"--options", fmt.Sprintf("-c listen_addresses= -c unix_socket_directories=%s -c fsync=off -c max_connections=200", dir), "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		return nil, fmt.Errorf("%w; server log: %s", err, bytes.TrimSpace(log))
	}
	if err := c.run("createdb", "--host", dir, "--username", "postgres", "flashstation"); err != nil {
		_ = c.Stop()
		return nil, err
	}
	c.URL = c.DatabaseURL("flashstation")
	return c, nil
}

// Stop stops the server (fast shutdown: sessions are ended).
func (c *Cluster) Stop() error {
	if _, err := os.Stat(filepath.Join(c.data, "postmaster.pid")); err != nil {
		return nil // not running
	}
	return c.run("pg_ctl", "--pgdata", c.data, "--wait", "--timeout", "60", "--silent", "--mode", "fast", "stop")
}

// Restart starts a stopped cluster again (tests of a ledger that goes
// away and comes back).
func (c *Cluster) Restart() error {
	return c.run("pg_ctl", "--pgdata", c.data, "--wait", "--timeout", "60", "--silent", "--log", filepath.Join(c.Dir, "server.log"),
		"--options", fmt.Sprintf("-c listen_addresses= -c unix_socket_directories=%s -c fsync=off -c max_connections=200", c.Dir), "start")
}

func (c *Cluster) run(tool string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, tool), args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgcluster: %s: %w: %s", tool, err, bytes.TrimSpace(out))
	}
	return nil
}

// CreateDatabase makes an empty database (from template, "" for the
// default) and returns its URL.
func (c *Cluster) CreateDatabase(name, template string) (string, error) {
	args := []string{"--host", c.Dir, "--username", "postgres"}
	if template != "" {
		args = append(args, "--template", template)
	}
	if err := c.run("createdb", append(args, name)...); err != nil {
		return "", err
	}
	return c.DatabaseURL(name), nil
}

// DatabaseURL is the URL of a database of the cluster.
func (c *Cluster) DatabaseURL(name string) string {
	q := url.Values{"host": {c.Dir}, "user": {"postgres"}, "sslmode": {"disable"}}
	return "postgres:///" + name + "?" + q.Encode()
}

// ownerFile holds the pid of the process that started a cluster.
const ownerFile = "owner.pid"

// MarkThrowaway says the cluster's directory may be removed once its
// starter is gone (a test's; a demo's data is kept).
func (c *Cluster) MarkThrowaway() error {
	return os.WriteFile(filepath.Join(c.Dir, throwawayFile), nil, 0o644)
}

const throwawayFile = "throwaway"

// reapOrphans stops the servers of the clusters under the temporary
// directory whose starting process is gone (killed before it could stop
// them): they would hold memory and processes for ever. A throwaway
// cluster's directory is removed too.
func reapOrphans(bin string) {
	tmp := filepath.Clean(os.TempDir())
	var owners []string
	for _, pattern := range []string{"*/pg-*/" + ownerFile, "*/*/pg-*/" + ownerFile, "*/*/*/pg-*/" + ownerFile} {
		m, _ := filepath.Glob(filepath.Join(tmp, pattern))
		owners = append(owners, m...)
	}
	for _, o := range owners {
		b, err := os.ReadFile(o)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // alive, or not ours to judge
		}
		dir := filepath.Dir(o)
		c := &Cluster{Dir: dir, bin: bin, data: filepath.Join(dir, "data")}
		if fi, err := os.Stat(dir); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && os.Geteuid() == 0 {
				c.cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid}
			}
		}
		if _, err := os.Stat(filepath.Join(c.data, "postmaster.pid")); err == nil {
			_ = c.run("pg_ctl", "--pgdata", c.data, "--wait", "--timeout", "30", "--silent", "--mode", "immediate", "stop")
		}
		if _, err := os.Stat(filepath.Join(dir, throwawayFile)); err == nil {
			os.RemoveAll(dir)
		}
	}
}

// Open starts again a cluster that New made in dir (its Dir) and that
// was kept, e.g. a benchmark's generated ledger cached between runs. A
// server already running there (left by a killed process) is used as it
// is.
func Open(dir string) (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, bin: bin, data: filepath.Join(dir, "data")}
	if _, err := os.Stat(filepath.Join(c.data, "PG_VERSION")); err != nil {
		return nil, fmt.Errorf("pgcluster: no cluster in %s: %w", dir, err)
	}
	if os.Geteuid() == 0 {
		fi, err := os.Stat(dir)
		if err != nil {
			return nil, err
		}
		st := fi.Sys().(*syscall.Stat_t)
		c.cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid}
	}
	if c.run("pg_ctl", "--pgdata", c.data, "--silent", "status") != nil {
		if err := c.Restart(); err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			return nil, fmt.Errorf("%w; server log: %s", err, lastLines(log, 5))
		}
	}
	c.URL = c.DatabaseURL("flashstation")
	return c, nil
}

// lastLines is the end of a log.
func lastLines(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return bytes.Join(lines[max(0, len(lines)-n):], []byte("\n"))
}
