package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Forwarding: a bench writes its own ledger first, always (durable, as if
// there were no factory), and its outbox lists every row it wrote, in
// order. Forward sends the rows the outbox names, as they are when sent,
// to the factory ledger in one transaction, then removes those entries.
// A row sent twice (the bench died between the factory's commit and its
// own) is the same row: rows are keyed by their uid, a finished unit is
// never changed, an event or assertion is never inserted twice. So
// nothing is lost and nothing doubled, whenever the factory ledger goes
// away or the bench is killed.

// EnableForwarding turns the outbox on for the factory ledger whose id is
// factoryID. The first time, or for another factory ledger, it queues
// everything the bench recorded so far (sending it again is harmless).
// It returns how many rows it queued.
func (l *Ledger) EnableForwarding(ctx context.Context, factoryID string) (int, error) {
	if l.d != sqliteDialect {
		return 0, errors.New("ledger: only a bench's ledger forwards")
	}
	if factoryID == "" {
		return 0, errors.New("ledger: enable forwarding: no factory ledger id")
	}
	var queued int
	err := l.write(ctx, func(tx *txn) error {
		var cur string
		err := tx.QueryRowContext(ctx, `SELECT factory_id FROM forwarding WHERE id = 1`).Scan(&cur)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if cur == factoryID {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO forwarding(id, factory_id, since) VALUES (1, ?, ?)
			ON CONFLICT(id) DO UPDATE SET factory_id = excluded.factory_id, since = excluded.since`, factoryID, l.stamp(time.Time{})); err != nil {
			return err
		}
		// Parents before children, each table in the order it was written.
		for _, t := range []struct{ name, id string }{{"stations", "rowid"}, {"lines", "rowid"}, {"batches", "id"},
			{"units", "id"}, {"serial_assertions", "id"}, {"events", "id"}, {"transcripts", "id"}} {
			res, err := tx.ExecContext(ctx, `INSERT INTO outbox(tbl, row_id) SELECT '`+t.name+`', `+t.id+` FROM `+t.name+` ORDER BY `+t.id)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			queued += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ledger: enable forwarding: %w", err)
	}
	return queued, nil
}

// DisableForwarding turns the outbox off and empties it (the station has
// no factory ledger any more). Enabling it again queues everything.
func (l *Ledger) DisableForwarding(ctx context.Context) error {
	if l.d != sqliteDialect {
		return nil
	}
	return l.write(ctx, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM forwarding`); err != nil {
			return fmt.Errorf("ledger: disable forwarding: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox`); err != nil {
			return fmt.Errorf("ledger: disable forwarding: %w", err)
		}
		return nil
	})
}

// Backlog is how many outbox entries wait to be sent.
func (l *Ledger) Backlog(ctx context.Context) (int, error) {
	if l.d != sqliteDialect {
		return 0, nil
	}
	// Entries are removed from the front only, so the outbox is a run
	// of seqs: its ends give its length without counting a long backlog.
	var n int
	if err := l.r.QueryRowContext(ctx, `SELECT coalesce(max(seq) - min(seq) + 1, 0) FROM outbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("ledger: outbox: %w", err)
	}
	return n, nil
}

// transcriptBytesPerChunk bounds the transcript files one chunk carries
// (four times MaxForwardedTranscript, so a file always fits).
const transcriptBytesPerChunk = 64 << 20

// ErrStationClash is the factory ledger refusing a bench's rows because
// another bench sent rows under the same station id (two benches
// configured alike): the bench keeps its rows and keeps trying, and the
// operator is told.
var ErrStationClash = errors.New("the factory ledger holds other rows of this station id: two benches share one station id")

// Forward sends up to limit outbox entries to the factory ledger to (in
// one transaction there), then removes them from the outbox, and returns
// how many entries it sent. With an empty outbox it records the bench's
// heartbeat. An error leaves the outbox as it was.
func (l *Ledger) Forward(ctx context.Context, to *Ledger, station string, limit int) (int, error) {
	if err := checkForward(l, to); err != nil {
		return 0, err
	}
	last, n, err := l.window(ctx, 0, math.MaxInt64, limit)
	if err != nil {
		return 0, err
	}
	c, err := l.readChunk(ctx, 0, last)
	if err != nil {
		return 0, fmt.Errorf("ledger: forward: read the outbox: %w", err)
	}
	return n, l.send(ctx, to, station, c, n, last)
}

// ForwardAll sends the outbox as it is when called (what is recorded
// meanwhile waits for the next call), chunk after chunk, reading the next
// chunk from the bench's ledger while the factory ledger takes the last
// one, and returns how many entries it sent (0: it beat the heartbeat).
// Each chunk is committed there before its entries leave the outbox, in
// order, as Forward does.
func (l *Ledger) ForwardAll(ctx context.Context, to *Ledger, station string, limit int) (int, error) {
	if err := checkForward(l, to); err != nil {
		return 0, err
	}
	type read struct {
		c    chunk
		last int64
		n    int
		err  error
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var end sql.NullInt64
	if err := l.r.QueryRowContext(ctx, `SELECT max(seq) FROM outbox`).Scan(&end); err != nil {
		return 0, fmt.Errorf("ledger: forward: %w", err)
	}
	reads := make(chan read) // one chunk read ahead, no more
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(reads)
		var after int64
		for {
			last, n, err := l.window(rctx, after, end.Int64, limit)
			var c chunk
			if err == nil && (n > 0 || after == 0) {
				c, err = l.readChunk(rctx, after, last)
			}
			if err != nil || n > 0 || after == 0 {
				select {
				case reads <- read{c: c, last: last, n: n, err: err}:
				case <-rctx.Done():
					return
				}
			}
			if err != nil || n == 0 {
				return
			}
			after = last
		}
	}()
	defer func() { cancel(); <-done }()
	total := 0
	for r := range reads {
		if r.err != nil {
			return total, fmt.Errorf("ledger: forward: read the outbox: %w", r.err)
		}
		if err := l.send(ctx, to, station, r.c, r.n, r.last); err != nil {
			return total, err
		}
		total += r.n
	}
	return total, ctx.Err()
}

func checkForward(from, to *Ledger) error {
	if from.d != sqliteDialect || to.d != postgresDialect || to.w == nil {
		return errors.New("ledger: forward: from a bench's ledger to a writable factory ledger")
	}
	return nil
}

// window is the next chunk: the outbox entries after seq after (and up
// to seq end), up to limit of them, and fewer when their transcript files would add up to
// more than transcriptBytesPerChunk (so that a chunk's memory stays
// bounded). It returns the chunk's last seq and
// how many entries it holds.
func (l *Ledger) window(ctx context.Context, after, end int64, limit int) (int64, int, error) {
	if limit <= 0 {
		limit = 5000
	}
	var last sql.NullInt64
	var n int
	if err := l.r.QueryRowContext(ctx, `SELECT max(seq), count(*) FROM (SELECT seq FROM outbox WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?)`,
		after, end, limit).Scan(&last, &n); err != nil {
		return 0, 0, fmt.Errorf("ledger: forward: %w", err)
	}
	if n == 0 {
		return after, 0, nil
	}
	// Each file counts at most MaxForwardedTranscript (what is bigger is
	// not sent), less than the budget: the first file always fits, so a
	// chunk is never empty.
	var cut sql.NullInt64
	if err := l.r.QueryRowContext(ctx, `SELECT min(seq) FILTER (WHERE total > ?3) FROM (
		SELECT o.seq, sum(min(t.size, ?4)) OVER (ORDER BY o.seq) AS total
		FROM outbox o JOIN transcripts t ON t.id = o.row_id WHERE o.tbl = 'transcripts' AND o.seq > ?1 AND o.seq <= ?2)`,
		after, last.Int64, transcriptBytesPerChunk, MaxForwardedTranscript).Scan(&cut); err != nil {
		return 0, 0, fmt.Errorf("ledger: forward: %w", err)
	}
	if cut.Valid {
		last.Int64 = cut.Int64 - 1
		if err := l.r.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE seq > ? AND seq <= ?`, after, last.Int64).Scan(&n); err != nil {
			return 0, 0, fmt.Errorf("ledger: forward: %w", err)
		}
	}
	return last.Int64, n, nil
}

// send commits a chunk of n entries (up to seq last) in the factory
// ledger, then removes them from the outbox.
func (l *Ledger) send(ctx context.Context, to *Ledger, station string, c chunk, n int, last int64) error {
	if err := to.ingest(ctx, c, station, fmtTime(l.now())); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if err := l.write(ctx, func(tx *txn) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq <= ?`, last)
		return err
	}); err != nil {
		// Sent, not yet removed: sent again next time, a no-op there.
		return fmt.Errorf("ledger: forward: clear the outbox: %w", err)
	}
	return nil
}

// chunk is the rows one Forward sends, as columns (the factory ledger
// takes each table in one statement).
type chunk struct {
	stations struct{ id, hostname, created []string }
	lines    struct{ station, id, name, brand, model, created, updated []string }
	batches  struct {
		uid, station, line, operator, image, state, reason, started []string
		modelDigest, seedLabel, modelSignKey, imageSeal             []string
		planned                                                     []int64
		closed                                                      []*string
	}
	units struct {
		uid, station, batch, line, slot, hw, serial, state, stage, reason, detail, started []string
		attempt, mapped, written, flash, verify, boot                                      []int64
		finished                                                                           []*string
	}
	assertions struct {
		uid, station, text, textSHA, brand, model, serial, key, line, via, received, prev, link []string
		seq, revision, duplicate                                                                []int64
		unit                                                                                    []*string
	}
	events struct {
		uid, station, at, slot, kind, stage, message, data []string
		batch, unit                                        []*string
	}
	transcripts struct {
		uid, station, slot, kind, path, sha, created []string
		size                                         []int64
		unit                                         []*string
		content                                      [][]byte
	}
}

// readChunk reads the rows the outbox names after seq after up to seq
// last (none when they are equal),
// with the units and batches they refer to (so the factory ledger always
// has a row's parents), and the bench's stations and lines, in one read
// transaction.
func (l *Ledger) readChunk(ctx context.Context, after, last int64) (chunk, error) {
	var c chunk
	tx, err := l.r.BeginTx(ctx, nil)
	if err != nil {
		return c, err
	}
	defer tx.Rollback() //nolint:errcheck // read only
	sent := func(tbl string) string {
		return `SELECT row_id FROM outbox WHERE tbl = '` + tbl + `' AND seq > ?2 AND seq <= ?1`
	}
	// Every query starts from the chunk's outbox entries (a range of its
	// primary key), never from a table: a bench with a year of records
	// reads only what it sends.
	from := func(tbl, alias string) string {
		return `outbox o JOIN ` + tbl + ` ` + alias + ` ON ` + alias + `.id = o.row_id WHERE o.tbl = '` + tbl + `' AND o.seq > ?2 AND o.seq <= ?1`
	}
	unitIDs := `SELECT row_id FROM outbox WHERE tbl = 'units' AND seq > ?2 AND seq <= ?1
		UNION SELECT e.unit_id FROM ` + from("events", "e") + ` AND e.unit_id IS NOT NULL
		UNION SELECT a.unit_id FROM ` + from("serial_assertions", "a") + ` AND a.unit_id IS NOT NULL
		UNION SELECT t.unit_id FROM ` + from("transcripts", "t") + ` AND t.unit_id IS NOT NULL`
	each := func(q string, scan func(rows *sql.Rows) error) error {
		rows, err := tx.QueryContext(ctx, q, last, after)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	err = each(`SELECT id, hostname, created_at FROM stations WHERE ?1 >= ?2 ORDER BY rowid`, func(rows *sql.Rows) error {
		var id, host, created string
		if err := rows.Scan(&id, &host, &created); err != nil {
			return err
		}
		s := &c.stations
		s.id, s.hostname, s.created = append(s.id, id), append(s.hostname, host), append(s.created, created)
		return nil
	})
	if err != nil {
		return c, err
	}
	err = each(`SELECT station_id, id, name, brand_id, model, created_at, updated_at FROM lines WHERE ?1 >= ?2 ORDER BY rowid`, func(rows *sql.Rows) error {
		var v [7]string
		if err := rows.Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6]); err != nil {
			return err
		}
		s := &c.lines
		s.station, s.id, s.name, s.brand = append(s.station, v[0]), append(s.id, v[1]), append(s.name, v[2]), append(s.brand, v[3])
		s.model, s.created, s.updated = append(s.model, v[4]), append(s.created, v[5]), append(s.updated, v[6])
		return nil
	})
	if err != nil || last <= after {
		return c, err
	}
	err = each(`SELECT uid, station_id, line_id, operator, planned, image_sha256, state, close_reason, started_at, closed_at,
		model_digest, seed_label, model_sign_key, image_seal
		FROM batches WHERE id IN (`+sent("batches")+`
			UNION SELECT batch_id FROM units WHERE id IN (`+unitIDs+`)
			UNION SELECT e.batch_id FROM `+from("events", "e")+` AND e.batch_id IS NOT NULL) ORDER BY id`, func(rows *sql.Rows) error {
		var v [12]string
		var planned int64
		var closed sql.NullString
		if err := rows.Scan(&v[0], &v[1], &v[2], &v[3], &planned, &v[4], &v[5], &v[6], &v[7], &closed,
			&v[8], &v[9], &v[10], &v[11]); err != nil {
			return err
		}
		b := &c.batches
		b.modelDigest, b.seedLabel = append(b.modelDigest, v[8]), append(b.seedLabel, v[9])
		b.modelSignKey, b.imageSeal = append(b.modelSignKey, v[10]), append(b.imageSeal, v[11])
		b.uid, b.station, b.line, b.operator = append(b.uid, v[0]), append(b.station, v[1]), append(b.line, v[2]), append(b.operator, v[3])
		b.image, b.state, b.reason, b.started = append(b.image, v[4]), append(b.state, v[5]), append(b.reason, v[6]), append(b.started, v[7])
		b.planned, b.closed = append(b.planned, planned), append(b.closed, nullStr(closed))
		return nil
	})
	if err != nil {
		return c, err
	}
	err = each(`SELECT u.uid, u.station_id, b.uid, u.line_id, u.slot_id, u.hw_serial, u.serial, u.state, u.stage, u.reason, u.detail,
		u.started_at, u.attempt, u.mapped_bytes, u.written_bytes, u.flash_ms, u.verify_ms, u.boot_ms, u.finished_at
		FROM units u JOIN batches b ON b.id = u.batch_id WHERE u.id IN (`+unitIDs+`) ORDER BY u.id`, func(rows *sql.Rows) error {
		var v [12]string
		var n [6]int64
		var finished sql.NullString
		if err := rows.Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11],
			&n[0], &n[1], &n[2], &n[3], &n[4], &n[5], &finished); err != nil {
			return err
		}
		u := &c.units
		for i, col := range []*[]string{&u.uid, &u.station, &u.batch, &u.line, &u.slot, &u.hw, &u.serial, &u.state, &u.stage,
			&u.reason, &u.detail, &u.started} {
			*col = append(*col, v[i])
		}
		for i, col := range []*[]int64{&u.attempt, &u.mapped, &u.written, &u.flash, &u.verify, &u.boot} {
			*col = append(*col, n[i])
		}
		u.finished = append(u.finished, nullStr(finished))
		return nil
	})
	if err != nil {
		return c, err
	}
	err = each(`SELECT a.uid, a.station_id, a.text, a.text_sha256, a.brand_id, a.model, a.serial, a.device_key_id, a.line_id, a.via,
		a.received_at, a.prev_sha256, a.link_sha256, a.id, a.revision, a.duplicate, u.uid
		FROM outbox o JOIN serial_assertions a ON a.id = o.row_id LEFT JOIN units u ON u.id = a.unit_id
		WHERE o.tbl = 'serial_assertions' AND o.seq > ?2 AND o.seq <= ?1 ORDER BY a.id`,
		func(rows *sql.Rows) error {
			var v [13]string
			var n [3]int64
			var unit sql.NullString
			if err := rows.Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12],
				&n[0], &n[1], &n[2], &unit); err != nil {
				return err
			}
			a := &c.assertions
			for i, col := range []*[]string{&a.uid, &a.station, &a.text, &a.textSHA, &a.brand, &a.model, &a.serial, &a.key,
				&a.line, &a.via, &a.received, &a.prev, &a.link} {
				*col = append(*col, v[i])
			}
			a.seq, a.revision, a.duplicate = append(a.seq, n[0]), append(a.revision, n[1]), append(a.duplicate, n[2])
			a.unit = append(a.unit, nullStr(unit))
			return nil
		})
	if err != nil {
		return c, err
	}
	err = each(`SELECT e.uid, e.station_id, e.at, e.slot_id, e.kind, e.stage, e.message, e.data, b.uid, u.uid
		FROM outbox o JOIN events e ON e.id = o.row_id LEFT JOIN batches b ON b.id = e.batch_id LEFT JOIN units u ON u.id = e.unit_id
		WHERE o.tbl = 'events' AND o.seq > ?2 AND o.seq <= ?1 ORDER BY e.id`, func(rows *sql.Rows) error {
		var v [8]string
		var batch, unit sql.NullString
		if err := rows.Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &batch, &unit); err != nil {
			return err
		}
		e := &c.events
		for i, col := range []*[]string{&e.uid, &e.station, &e.at, &e.slot, &e.kind, &e.stage, &e.message, &e.data} {
			*col = append(*col, v[i])
		}
		e.batch, e.unit = append(e.batch, nullStr(batch)), append(e.unit, nullStr(unit))
		return nil
	})
	if err != nil {
		return c, err
	}
	err = each(`SELECT t.uid, t.station_id, t.slot_id, t.kind, t.path, t.sha256, t.created_at, t.size, u.uid
		FROM outbox o JOIN transcripts t ON t.id = o.row_id LEFT JOIN units u ON u.id = t.unit_id
		WHERE o.tbl = 'transcripts' AND o.seq > ?2 AND o.seq <= ?1 ORDER BY t.id`,
		func(rows *sql.Rows) error {
			var v [7]string
			var size int64
			var unit sql.NullString
			if err := rows.Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &size, &unit); err != nil {
				return err
			}
			t := &c.transcripts
			for i, col := range []*[]string{&t.uid, &t.station, &t.slot, &t.kind, &t.path, &t.sha, &t.created} {
				*col = append(*col, v[i])
			}
			t.size, t.unit = append(t.size, size), append(t.unit, nullStr(unit))
			t.content = append(t.content, packTranscript(v[4], v[5], size))
			return nil
		})
	return c, err
}

// clean makes the chunk's texts what PostgreSQL takes (no NUL, valid
// UTF-8; SQLite takes anything): one odd string must not stop a bench's
// forwarding for good. Serial assertions are sent as they are: their
// texts are hashed and signed, and the bench verified them.
func (c *chunk) clean() {
	fix := func(cols ...[]string) {
		for _, col := range cols {
			for i, v := range col {
				if strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
					col[i] = strings.ToValidUTF8(strings.ReplaceAll(v, "\x00", ""), "\uFFFD")
				}
			}
		}
	}
	fix(c.stations.hostname, c.lines.name, c.batches.operator, c.units.slot, c.units.hw, c.units.serial, c.units.stage,
		c.units.reason, c.units.detail, c.events.slot, c.events.kind, c.events.stage, c.events.message, c.events.data,
		c.transcripts.slot, c.transcripts.path)
}

func nullStr(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	return &s.String
}

// ingest writes a chunk into the factory ledger in one transaction: each
// table in one statement, parents first, every row keyed by its uid.
func (l *Ledger) ingest(ctx context.Context, c chunk, station, now string) error {
	c.clean()
	// Read committed, whatever the server's default: the duplicates'
	// check, once it holds its lock, sees what other benches committed.
	err := inTxWith(ctx, l.w, &sql.TxOptions{Isolation: sql.LevelReadCommitted}, func(tx *txn) error {
		exec := func(what, q string, args ...any) error {
			if _, err := tx.Tx.ExecContext(ctx, q, args...); err != nil {
				var pgErr interface{ SQLState() string }
				if errors.As(err, &pgErr) && pgErr.SQLState() == "23505" && what == "serial assertions" {
					return fmt.Errorf("ledger: forward %s: %w (%v)", what, ErrStationClash, err)
				}
				return fmt.Errorf("ledger: forward %s: %w", what, err)
			}
			return nil
		}
		s := c.stations
		if err := exec("stations", `INSERT INTO stations(id, hostname, created_at)
			SELECT id, hostname, created_at FROM unnest($1::text[], $2::text[], $3::text[]) AS s(id, hostname, created_at)
			ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname WHERE stations.hostname IS DISTINCT FROM excluded.hostname`,
			s.id, s.hostname, s.created); err != nil {
			return err
		}
		// The forwarding bench is seen even before it recorded itself.
		if err := exec("stations", `INSERT INTO stations(id, created_at, seen_at) VALUES ($1, $2, $2)
			ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at`, station, now); err != nil {
			return err
		}
		ln := c.lines
		if err := exec("lines", `INSERT INTO lines(station_id, id, name, brand_id, model, created_at, updated_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
			ON CONFLICT (station_id, id) DO UPDATE SET name = excluded.name, brand_id = excluded.brand_id, model = excluded.model,
				updated_at = excluded.updated_at
			WHERE (lines.name, lines.brand_id, lines.model) IS DISTINCT FROM (excluded.name, excluded.brand_id, excluded.model)`,
			ln.station, ln.id, ln.name, ln.brand, ln.model, ln.created, ln.updated); err != nil {
			return err
		}
		if len(c.batches.uid) > 0 {
			b := c.batches
			// A batch's line as its bench was named then (a renamed
			// station's old batches keep the old name).
			if err := exec("lines", `INSERT INTO lines(station_id, id, created_at, updated_at)
				SELECT DISTINCT station_id, line_id, $3, $3 FROM unnest($1::text[], $2::text[]) AS n(station_id, line_id)
				ON CONFLICT (station_id, id) DO NOTHING`, b.station, b.line, now); err != nil {
				return err
			}
			if err := exec("batches", `INSERT INTO batches(uid, station_id, line_id, operator, planned, image_sha256, state, close_reason,
				started_at, closed_at, model_digest, seed_label, model_sign_key, image_seal)
				SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[],
					$9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
				ON CONFLICT (uid) DO UPDATE SET operator = excluded.operator, state = excluded.state,
					close_reason = excluded.close_reason, closed_at = excluded.closed_at
				WHERE batches.station_id = excluded.station_id`,
				b.uid, b.station, b.line, b.operator, b.planned, b.image, b.state, b.reason, b.started, b.closed,
				b.modelDigest, b.seedLabel, b.modelSignKey, b.imageSeal); err != nil {
				return err
			}
		}
		if len(c.units.uid) > 0 {
			u := c.units
			if err := exec("units", `INSERT INTO units(uid, station_id, batch_id, line_id, slot_id, hw_serial, serial, state, stage, reason,
				detail, started_at, attempt, mapped_bytes, written_bytes, flash_ms, verify_ms, boot_ms, finished_at)
				SELECT n.uid, n.station_id, b.id, n.line_id, n.slot_id, n.hw_serial, n.serial, n.state, n.stage, n.reason, n.detail,
					n.started_at, n.attempt, n.mapped_bytes, n.written_bytes, n.flash_ms, n.verify_ms, n.boot_ms, n.finished_at
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
					$10::text[], $11::text[], $12::text[], $13::int[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[],
					$18::bigint[], $19::text[]) WITH ORDINALITY
					AS n(uid, station_id, batch_uid, line_id, slot_id, hw_serial, serial, state, stage, reason, detail, started_at,
						attempt, mapped_bytes, written_bytes, flash_ms, verify_ms, boot_ms, finished_at, ord)
				JOIN batches b ON b.uid = n.batch_uid ORDER BY n.ord
				ON CONFLICT (uid) DO UPDATE SET hw_serial = excluded.hw_serial, serial = excluded.serial, state = excluded.state,
					stage = excluded.stage, reason = excluded.reason, detail = excluded.detail, mapped_bytes = excluded.mapped_bytes,
					written_bytes = excluded.written_bytes, flash_ms = excluded.flash_ms, verify_ms = excluded.verify_ms,
					boot_ms = excluded.boot_ms, finished_at = excluded.finished_at
				WHERE units.state = 'running' AND units.station_id = excluded.station_id`,
				u.uid, u.station, u.batch, u.line, u.slot, u.hw, u.serial, u.state, u.stage, u.reason, u.detail, u.started,
				u.attempt, u.mapped, u.written, u.flash, u.verify, u.boot, u.finished); err != nil {
				return err
			}
		}
		if len(c.events.uid) > 0 {
			e := c.events
			if err := exec("events", `INSERT INTO events(uid, station_id, at, slot_id, kind, stage, message, data, batch_id, unit_id)
				SELECT n.uid, n.station_id, n.at, n.slot_id, n.kind, n.stage, n.message, n.data, b.id, u.id
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
					$9::text[], $10::text[]) WITH ORDINALITY AS n(uid, station_id, at, slot_id, kind, stage, message, data, batch_uid, unit_uid, ord)
				LEFT JOIN batches b ON b.uid = n.batch_uid LEFT JOIN units u ON u.uid = n.unit_uid ORDER BY n.ord
				ON CONFLICT (uid) DO NOTHING`,
				e.uid, e.station, e.at, e.slot, e.kind, e.stage, e.message, e.data, e.batch, e.unit); err != nil {
				return err
			}
		}
		if len(c.transcripts.uid) > 0 {
			t := c.transcripts
			if err := exec("transcripts", `INSERT INTO transcripts(uid, station_id, slot_id, kind, path, sha256, created_at, size, unit_id, content)
				SELECT n.uid, n.station_id, n.slot_id, n.kind, n.path, n.sha256, n.created_at, n.size, u.id, n.content
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[],
					$10::bytea[]) WITH ORDINALITY
					AS n(uid, station_id, slot_id, kind, path, sha256, created_at, size, unit_uid, content, ord)
				LEFT JOIN units u ON u.uid = n.unit_uid ORDER BY n.ord
				ON CONFLICT (uid) DO UPDATE SET content = excluded.content
				WHERE transcripts.content IS NULL AND excluded.content IS NOT NULL AND transcripts.station_id = excluded.station_id
					AND transcripts.sha256 = excluded.sha256`,
				t.uid, t.station, t.slot, t.kind, t.path, t.sha, t.created, t.size, t.unit, t.content); err != nil {
				return err
			}
		}
		if len(c.assertions.uid) > 0 {
			// Last, and one forward at a time across benches (held to the
			// commit): a serial two benches send at once is seen by the
			// second, whose check finds the first.
			if err := exec("serial assertions", `SELECT pg_advisory_xact_lock($1)`, int64(pgLock+1)); err != nil {
				return err
			}
		}
		if len(c.assertions.uid) > 0 {
			a := c.assertions
			if err := exec("serial assertions", `INSERT INTO serial_assertions(uid, station_id, text, text_sha256, brand_id, model, serial,
				device_key_id, line_id, via, received_at, prev_sha256, link_sha256, seq, revision, duplicate, unit_id)
				SELECT n.uid, n.station_id, n.text, n.text_sha256, n.brand_id, n.model, n.serial, n.device_key_id, n.line_id, n.via,
					n.received_at, n.prev_sha256, n.link_sha256, n.seq, n.revision, n.duplicate, u.id
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
					$10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::bigint[], $16::int[], $17::text[]) WITH ORDINALITY
					AS n(uid, station_id, text, text_sha256, brand_id, model, serial, device_key_id, line_id, via, received_at,
						prev_sha256, link_sha256, seq, revision, duplicate, unit_uid, ord)
				LEFT JOIN units u ON u.uid = n.unit_uid ORDER BY n.ord
				ON CONFLICT (uid) DO UPDATE SET unit_id = excluded.unit_id
				WHERE serial_assertions.unit_id IS NULL AND excluded.unit_id IS NOT NULL
					AND serial_assertions.station_id = excluded.station_id`,
				a.uid, a.station, a.text, a.textSHA, a.brand, a.model, a.serial, a.key, a.line, a.via, a.received, a.prev, a.link,
				a.seq, a.revision, a.duplicate, a.unit); err != nil {
				return err
			}
		}
		if len(c.assertions.uid) > 0 {
			// The chunk's serials and device keys that another bench
			// recorded: both sides, once.
			if err := exec("duplicates", `WITH n AS (SELECT * FROM serial_assertions WHERE uid = ANY($1::text[])),
				pairs AS (
					SELECT 'serial' AS kind, n.brand_id || '/' || n.model || '/' || n.serial AS value, n.id AS a, x.id AS b
					FROM n JOIN serial_assertions x ON x.brand_id = n.brand_id AND x.model = n.model AND x.serial = n.serial
						AND x.station_id != n.station_id
					UNION ALL
					SELECT 'device-key', n.device_key_id, n.id, x.id
					FROM n JOIN serial_assertions x ON x.device_key_id = n.device_key_id AND x.station_id != n.station_id),
				sides AS (SELECT kind, value, a AS id FROM pairs UNION SELECT kind, value, b FROM pairs)
				INSERT INTO cross_bench_duplicates(kind, value, serial, line_id, station_id, uid, received_at)
				SELECT s.kind, s.value, r.serial, r.line_id, r.station_id, r.uid, r.received_at
				FROM sides s JOIN serial_assertions r ON r.id = s.id ORDER BY r.id
				ON CONFLICT (kind, uid) DO NOTHING`, c.assertions.uid); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}
