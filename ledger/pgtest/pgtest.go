// Package pgtest starts throwaway PostgreSQL clusters for tests
// (internal/pgcluster), stopped and removed when the test ends, and skips
// a test where the machine has no PostgreSQL server.
package pgtest

import (
	"errors"
	"testing"

	"github.com/flashstation/flashstation/internal/pgcluster"
)

// Cluster is a running throwaway cluster.
type Cluster = pgcluster.Cluster

// ErrNoServer is why Start skips: no PostgreSQL server binaries here.
var ErrNoServer = pgcluster.ErrNoServer

// New initialises and starts a cluster under parent.
func New(parent string) (*Cluster, error) { return pgcluster.New(parent) }

// Open starts again a cluster kept in dir (pgcluster.Open).
func Open(dir string) (*Cluster, error) { return pgcluster.Open(dir) }

// BinDir finds the newest PostgreSQL server binaries.
func BinDir() (string, error) { return pgcluster.BinDir() }

// Start starts a cluster for t, skipping t when the machine has no
// PostgreSQL server, and stops it when t ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	c, err := New(t.TempDir())
	if errors.Is(err, ErrNoServer) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MarkThrowaway(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	return c
}
