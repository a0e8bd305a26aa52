package ledger

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
)

// dialect is the SQL engine under a ledger: the embedded SQLite file of a
// bench, or the factory's PostgreSQL. The queries are written once, in
// the SQL both accept, with ? parameters (?N for a numbered one); on
// PostgreSQL they are rewritten to $N before they run.
type dialect int

const (
	sqliteDialect dialect = iota
	postgresDialect
)

func (d dialect) String() string {
	if d == postgresDialect {
		return "postgres"
	}
	return "sqlite"
}

// rebindCache holds the PostgreSQL form of each query text: the texts are
// constants or built from a few shapes, so it stays small.
var rebindCache sync.Map

// bind returns q as the dialect takes it.
func (d dialect) bind(q string) string {
	if d != postgresDialect {
		return q
	}
	if v, ok := rebindCache.Load(q); ok {
		return v.(string)
	}
	out := rebind(q)
	rebindCache.Store(q, out)
	return out
}

// rebind turns ? and ?N parameters into $N, outside quoted text and
// comments.
func rebind(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(q) && q[j] != c {
				j++
			}
			b.WriteString(q[i:min(j+1, len(q))])
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			b.WriteString(q[i : i+j])
			i += j - 1
		case c == '?':
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			if j > i+1 {
				b.WriteString("$" + q[i+1:j])
			} else {
				n++
				b.WriteString("$" + strconv.Itoa(n))
			}
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// db is a pool of one dialect.
type db struct {
	*sql.DB
	d dialect
}

func (x *db) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return x.DB.QueryContext(ctx, x.d.bind(q), args...)
}

func (x *db) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return x.DB.QueryRowContext(ctx, x.d.bind(q), args...)
}

func (x *db) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return x.DB.ExecContext(ctx, x.d.bind(q), args...)
}

func (x *db) BeginTx(ctx context.Context, opts *sql.TxOptions) (*txn, error) {
	t, err := x.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &txn{Tx: t, d: x.d}, nil
}

func (x *db) Conn(ctx context.Context) (*conn, error) {
	c, err := x.DB.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, d: x.d}, nil
}

// conn is one connection of a pool.
type conn struct {
	*sql.Conn
	d dialect
}

func (x *conn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return x.Conn.ExecContext(ctx, x.d.bind(q), args...)
}

func (x *conn) BeginTx(ctx context.Context, opts *sql.TxOptions) (*txn, error) {
	t, err := x.Conn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &txn{Tx: t, d: x.d}, nil
}

// txn is a transaction of one dialect.
type txn struct {
	*sql.Tx
	d dialect
}

func (x *txn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return x.Tx.QueryContext(ctx, x.d.bind(q), args...)
}

func (x *txn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return x.Tx.QueryRowContext(ctx, x.d.bind(q), args...)
}

func (x *txn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return x.Tx.ExecContext(ctx, x.d.bind(q), args...)
}

func (x *txn) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	return x.Tx.PrepareContext(ctx, x.d.bind(q))
}
