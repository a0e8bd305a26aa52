package ledger_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/flashstation/flashstation/ledger"
	"github.com/flashstation/flashstation/ledger/pgtest"
)

// backend is a kind of ledger the conformance tests run on: the bench's
// SQLite file or the factory's PostgreSQL.
type backend struct {
	name string
	open func(t *testing.T, opts ...ledger.Option) *ledger.Ledger
	// raw is a plain connection to the ledger's database, under the
	// ledger (tampering).
	raw func(t *testing.T, l *ledger.Ledger) *sql.DB
	// reopen is a second handle on the same ledger, as another process
	// has.
	reopen func(t *testing.T, l *ledger.Ledger) *ledger.Ledger
}

var sqliteBackend = backend{
	name: "sqlite",
	open: func(t *testing.T, opts ...ledger.Option) *ledger.Ledger {
		t.Helper()
		l, err := ledger.Open(context.Background(), filepath.Join(t.TempDir(), ledger.FileName), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	},
	raw: func(t *testing.T, l *ledger.Ledger) *sql.DB {
		t.Helper()
		db, err := ledger.RawDB(l.Path())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	},
	reopen: func(t *testing.T, l *ledger.Ledger) *ledger.Ledger {
		t.Helper()
		other, err := ledger.Open(context.Background(), l.Path())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { other.Close() })
		return other
	},
}

// The factory ledger's tests share one cluster; each test gets a database
// of its own, copied from a migrated template.
var factory struct {
	once    sync.Once
	cluster *pgtest.Cluster
	dir     string
	err     error
	n       atomic.Int64
	urls    sync.Map // *ledger.Ledger -> URL
}

func startFactory() (*pgtest.Cluster, error) {
	factory.once.Do(func() {
		factory.dir, factory.err = os.MkdirTemp("", "ledger-pg-")
		if factory.err != nil {
			return
		}
		factory.cluster, factory.err = pgtest.New(factory.dir)
		if factory.err != nil {
			return
		}
		if factory.err = factory.cluster.MarkThrowaway(); factory.err != nil {
			return
		}
		var url string
		if url, factory.err = factory.cluster.CreateDatabase("template_ledger", ""); factory.err != nil {
			return
		}
		l, err := ledger.OpenFactory(context.Background(), url)
		if err != nil {
			factory.err = err
			return
		}
		factory.err = l.Close()
	})
	return factory.cluster, factory.err
}

func stopFactory() {
	if factory.cluster != nil {
		_ = factory.cluster.Stop()
	}
	if factory.dir != "" {
		os.RemoveAll(factory.dir)
	}
}

// factoryURL is a new, migrated factory ledger database for t.
func factoryURL(t testing.TB) string {
	t.Helper()
	c, err := startFactory()
	if err != nil {
		if os.Getenv("FLASHSTATION_REQUIRE_POSTGRES") == "" {
			t.Skipf("factory ledger: %v", err)
		}
		t.Fatalf("factory ledger: %v", err)
	}
	url, err := c.CreateDatabase(fmt.Sprintf("t%d", factory.n.Add(1)), "template_ledger")
	if err != nil {
		t.Fatal(err)
	}
	return url
}

var postgresBackend = backend{
	name: "postgres",
	open: func(t *testing.T, opts ...ledger.Option) *ledger.Ledger {
		t.Helper()
		url := factoryURL(t)
		l, err := ledger.OpenFactory(context.Background(), url, opts...)
		if err != nil {
			t.Fatal(err)
		}
		factory.urls.Store(l, url)
		t.Cleanup(func() { l.Close() })
		return l
	},
	raw: func(t *testing.T, l *ledger.Ledger) *sql.DB {
		t.Helper()
		url, ok := factory.urls.Load(l)
		if !ok {
			t.Fatal("not a factory ledger of these tests")
		}
		db, err := sql.Open("pgx", url.(string))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	},
	reopen: func(t *testing.T, l *ledger.Ledger) *ledger.Ledger {
		t.Helper()
		url, ok := factory.urls.Load(l)
		if !ok {
			t.Fatal("not a factory ledger of these tests")
		}
		other, err := ledger.OpenFactory(context.Background(), url.(string))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { other.Close() })
		return other
	},
}

// eachBackend runs a conformance test on both kinds of ledger.
func eachBackend(t *testing.T, body func(t *testing.T, be backend)) {
	for _, be := range []backend{sqliteBackend, postgresBackend} {
		t.Run(be.name, func(t *testing.T) { body(t, be) })
	}
}
