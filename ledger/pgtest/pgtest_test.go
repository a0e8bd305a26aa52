package pgtest_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/flashstation/flashstation/ledger/pgtest"
)

// TestClusterStartsStopsRestarts: a throwaway cluster answers on its unix
// socket only, keeps its data over a stop and start, and refuses
// connections while stopped.
func TestClusterStartsStopsRestarts(t *testing.T) {
	c := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	var listen string
	if err := conn.QueryRow(ctx, "SHOW listen_addresses").Scan(&listen); err != nil {
		t.Fatal(err)
	}
	if listen != "" {
		t.Errorf("listen_addresses %q: the cluster listens on TCP", listen)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('unit 1')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if conn, err := pgx.Connect(ctx, c.URL); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped cluster")
	}
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "unit 1" {
		t.Fatalf("after restart: %q, %v", v, err)
	}
}

const orphanEnv = "PGTEST_ORPHAN_DIR"

// TestMain lets the test binary be the process that starts a cluster and
// dies without stopping it.
func TestMain(m *testing.M) {
	if dir := os.Getenv(orphanEnv); dir != "" {
		c, err := pgtest.New(dir)
		if err == nil {
			err = c.MarkThrowaway()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(c.Dir)
		select {} // killed here
	}
	os.Exit(m.Run())
}

// TestOrphanReaped: a cluster whose test was killed (no cleanup ran) is
// stopped and removed by the next cluster's start.
func TestOrphanReaped(t *testing.T) {
	if _, err := pgtest.BinDir(); err != nil {
		t.Skip(err)
	}
	parent, err := os.MkdirTemp("", "orphan-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(parent)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), orphanEnv+"="+parent)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("the child started no cluster: %v", err)
	}
	dir := strings.TrimSpace(line)
	pidFile := filepath.Join(dir, "data", "postmaster.pid")
	if _, err := os.Stat(pidFile); err != nil {
		t.Fatalf("no running cluster in %s: %v", dir, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(pidFile); err != nil {
		t.Fatalf("the orphan's server stopped by itself: %v", err)
	}
	pgtest.Start(t) // reaps
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the orphan cluster %s is still there: %v", dir, err)
	}
}

// TestOpenKeptCluster: a cluster kept on disk starts again with its data
// (a benchmark's cached ledger), and one still running is used as it is.
func TestOpenKeptCluster(t *testing.T) {
	c := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('unit 1')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, state := range []string{"stopped", "running"} {
		o, err := pgtest.Open(c.Dir)
		if err != nil {
			t.Fatalf("open a %s cluster: %v", state, err)
		}
		conn, err := pgx.Connect(ctx, o.URL)
		if err != nil {
			t.Fatal(err)
		}
		var v string
		err = conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v)
		conn.Close(ctx)
		if err != nil || v != "unit 1" {
			t.Fatalf("opened a %s cluster: %q, %v", state, v, err)
		}
	}
	if _, err := pgtest.Open(t.TempDir()); err == nil {
		t.Error("opened a directory without a cluster")
	}
}
