package pgtest_test

import (
	"context"
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
