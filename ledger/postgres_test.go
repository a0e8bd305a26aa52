package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/flashstation/flashstation/ledger"
)

// TestFactoryMigratesOnce: benches that start together on an empty
// factory ledger create its tables once; a reader of a ledger newer than
// it knows is refused with what to do.
func TestFactoryMigratesOnce(t *testing.T) {
	c, err := startFactory()
	if err != nil {
		t.Skipf("factory ledger: %v", err)
	}
	url, err := c.CreateDatabase(fmt.Sprintf("empty%d", factory.n.Add(1)), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := ledger.OpenFactory(ctx, url)
			if err == nil {
				err = l.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("bench %d: %v", i, err)
		}
	}
	l, err := ledger.OpenFactoryReadOnly(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := l.Version(ctx); err != nil || v != ledger.FactorySchemaVersion() {
		t.Errorf("version %d %v, want %d", v, err, ledger.FactorySchemaVersion())
	}
	if err := l.EnsureStation(ctx, ledger.Station{ID: "x"}); err == nil {
		t.Error("a read-only factory ledger took a write")
	}
	l.Close()
	db := postgresBackend.raw(t, mustOpenFactory(t, url))
	if _, err := db.Exec(`UPDATE ledger_schema SET version = 99`); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.OpenFactoryReadOnly(ctx, url); err == nil || !strings.Contains(err.Error(), "schema version 99") {
		t.Errorf("newer factory ledger read: %v", err)
	}
	if _, err := ledger.OpenFactory(ctx, url); err == nil || !strings.Contains(err.Error(), "newer than this flashstation") {
		t.Errorf("newer factory ledger opened: %v", err)
	}
}

func mustOpenFactory(t *testing.T, url string) *ledger.Ledger {
	t.Helper()
	l, err := ledger.OpenFactory(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	factory.urls.Store(l, url)
	t.Cleanup(func() { l.Close() })
	return l
}

// TestFactoryURLRedacted: a factory ledger's URL is shown without its
// password, wherever it goes.
func TestFactoryURLRedacted(t *testing.T) {
	for _, u := range []string{"postgres://bench:s3cret@db:5432/flashstation", "postgres:///flashstation?host=/run&password=s3cret&user=b",
		"postgresql://bench:s3cret@db/flashstation?sslmode=require"} {
		if got := ledger.RedactURL(u); strings.Contains(got, "s3cret") || !strings.HasPrefix(got, "postgres") {
			t.Errorf("RedactURL(%q) = %q", u, got)
		}
		_, err := ledger.OpenFactory(context.Background(), strings.Replace(u, "db", "127.0.0.1:1", 1)+"&connect_timeout=1")
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("OpenFactory(%s): %v", ledger.RedactURL(u), err)
		}
	}
	if ledger.IsFactoryURL("/var/lib/flashstation/ledger.db") || !ledger.IsFactoryURL("postgres://db/f") {
		t.Error("IsFactoryURL")
	}
}
