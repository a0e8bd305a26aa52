package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The serial assertions form a hash chain, so that a changed, inserted or
// deleted row shows even where the triggers were dropped:
//
//	link(row) = SHA-256(prev || canonical(row))
//
// where prev is the previous row's link as 32 raw bytes (32 zero bytes for
// the first row: prev_sha256 = 64 zeros) and canonical(row) is, for each
// of the fields id, text_sha256, brand_id, model, serial, revision,
// device_key_id, line_id, via, duplicate, received_at in that order, the
// field's length as 8 bytes big-endian followed by its bytes. Integers are
// written in decimal (duplicate is "0" or "1"); texts are the bytes the
// ledger stores (received_at as 2006-01-02T15:04:05.000Z). Links are
// stored as lowercase hex. The text itself is in the chain through
// text_sha256, which Verify checks against it. unit_id is not in the
// chain: an assertion recorded before its unit was known is linked later;
// Verify checks the link against the unit instead.

// ZeroLink is the prev_sha256 of the first serial assertion.
var ZeroLink = strings.Repeat("0", 64)

// chainRow is what a link covers.
type chainRow struct {
	id                               int64
	textSHA256, brand, model, serial string
	revision                         int64
	deviceKeyID, lineID, via         string
	duplicate                        bool
	receivedAt                       string
}

// canonical is the row's canonical bytes.
func (r chainRow) canonical() []byte {
	dup := "0"
	if r.duplicate {
		dup = "1"
	}
	return canonicalFields(strconv.FormatInt(r.id, 10), r.textSHA256, r.brand, r.model, r.serial,
		strconv.FormatInt(r.revision, 10), r.deviceKeyID, r.lineID, r.via, dup, r.receivedAt)
}

// canonicalFields is each field as its length (8 bytes, big-endian)
// followed by its bytes.
func canonicalFields(fields ...string) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// A batch records the image it flashes (schema version 5), sealed:
//
//	image_seal = SHA-256(canonical(batch))
//
// as lowercase hex, where canonical(batch) is, for each of the fields uid,
// station_id, line_id, image_sha256, model_digest, seed_label,
// model_sign_key in that order, the field length as 8 bytes big-endian
// followed by its bytes (as in the chain above). The uid ties the seal to
// its batch; a batch started before version 5 is sealed with its empty
// identity by the migration, so it verifies as it was recorded. The
// factory ledger computes the same seal in SQL (ledger_batch_seal, its
// schema version 8) for the batches it held before.

// sealRow is what a batch seal covers.
type sealRow struct {
	uid, station, lineID, image, modelDigest, seedLabel, modelSignKey string
}

func sealOf(b Batch) sealRow {
	return sealRow{uid: b.UID, station: b.StationID, lineID: b.LineID, image: b.ImageSHA256,
		modelDigest: b.ModelDigest, seedLabel: b.SeedLabel, modelSignKey: b.ModelSignKey}
}

// imageSeal is a batch seal.
func imageSeal(r sealRow) string {
	sum := sha256.Sum256(canonicalFields(r.uid, r.station, r.lineID, r.image, r.modelDigest, r.seedLabel, r.modelSignKey))
	return hex.EncodeToString(sum[:])
}

// sealExisting is version 5 Go step: it seals the batches recorded
// before version 5, as they are (their image identity empty).
func sealExisting(ctx context.Context, tx *txn) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, uid, station_id, line_id, image_sha256, model_digest, seed_label, model_sign_key
		FROM batches WHERE image_seal = '' ORDER BY id`)
	if err != nil {
		return err
	}
	seals := map[int64]string{}
	for rows.Next() {
		var id int64
		var r sealRow
		if err := rows.Scan(&id, &r.uid, &r.station, &r.lineID, &r.image, &r.modelDigest, &r.seedLabel, &r.modelSignKey); err != nil {
			rows.Close()
			return err
		}
		seals[id] = imageSeal(r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for id, seal := range seals {
		if _, err := tx.ExecContext(ctx, `UPDATE batches SET image_seal = ? WHERE id = ?`, seal, id); err != nil {
			return err
		}
	}
	return nil
}

// chainLink computes a row's link from the previous link (hex). A prev
// that is not 64 hex digits gives a link no row can match.
func chainLink(prev string, r chainRow) string {
	p, err := hex.DecodeString(prev)
	if err != nil || len(p) != sha256.Size {
		p = []byte("invalid prev:" + prev)
	}
	h := sha256.New()
	h.Write(p)
	h.Write(r.canonical())
	return hex.EncodeToString(h.Sum(nil))
}

// ChainHead is the end of the serial assertions' chain: how many rows
// there are and the last row's link (ZeroLink when there is none). An
// export carrying it lets a later Verify tell whether rows were removed
// from the end.
type ChainHead struct {
	Rows int64  `json:"rows"`
	Link string `json:"link_sha256"`
}

func (h ChainHead) String() string { return fmt.Sprintf("%d rows, head %s", h.Rows, h.Link) }

// ChainHead returns the chain's current head. A factory ledger holds one
// chain per bench: its head is StationChainHead's; this one counts every
// bench's rows and has no link.
func (l *Ledger) ChainHead(ctx context.Context) (ChainHead, error) {
	if l.d == postgresDialect {
		h := ChainHead{}
		err := l.r.QueryRowContext(ctx, `SELECT count(*) FROM serial_assertions`).Scan(&h.Rows)
		if err != nil {
			return h, fmt.Errorf("ledger: chain head: %w", err)
		}
		return h, nil
	}
	return l.chainHead(ctx, "")
}

// StationChainHead is the head of one bench's chain (on a bench's own
// ledger, the chain). On a factory ledger its Rows is the head's place in
// the bench's chain (its seq), which is the number of rows when none is
// missing (Verify says when one is): read from the index in one step,
// where counting a bench's rows took 30 ms of every evidence lookup
// (logs SERIAL) on a 10,000,000-unit ledger.
func (l *Ledger) StationChainHead(ctx context.Context, station string) (ChainHead, error) {
	if l.d != postgresDialect {
		return l.chainHead(ctx, station)
	}
	h := ChainHead{Link: ZeroLink}
	err := l.r.QueryRowContext(ctx, `SELECT seq, link_sha256 FROM serial_assertions WHERE station_id = ?
		ORDER BY seq DESC LIMIT 1`, station).Scan(&h.Rows, &h.Link)
	if errors.Is(err, sql.ErrNoRows) {
		return ChainHead{Link: ZeroLink}, nil
	}
	if err != nil {
		return h, fmt.Errorf("ledger: chain head: %w", err)
	}
	return h, nil
}

// The chain's columns: a bench's ledger holds one chain, in id order; a
// factory ledger one per station, in seq order (the bench's ids).
func (d dialect) chainSeq() string {
	if d == postgresDialect {
		return "seq"
	}
	return "id"
}

// chainKey is the column that tells chains apart (an empty string on a bench: one
// chain, whichever station recorded the row).
func (d dialect) chainKey() string {
	if d == postgresDialect {
		return "station_id"
	}
	return "''"
}

// chainKeyOf is chainKey of a table named alias in a query.
func (d dialect) chainKeyOf(alias string) string {
	if d == postgresDialect {
		return alias + ".station_id"
	}
	return "''"
}

// chainOf is the chain a station's row is in: its station on a factory
// ledger, the one chain on a bench.
func (d dialect) chainOf(station string) string {
	if d == postgresDialect {
		return station
	}
	return ""
}

func (l *Ledger) chainHead(ctx context.Context, station string) (ChainHead, error) {
	h := ChainHead{Link: ZeroLink}
	seq, key := l.d.chainSeq(), l.d.chainKey()
	k := l.d.chainOf(station)
	err := l.r.QueryRowContext(ctx, `SELECT count(*), coalesce((SELECT link_sha256 FROM serial_assertions WHERE `+key+` = ?
		ORDER BY `+seq+` DESC LIMIT 1), '') FROM serial_assertions WHERE `+key+` = ?`, k, k).Scan(&h.Rows, &h.Link)
	if err != nil {
		return h, fmt.Errorf("ledger: chain head: %w", err)
	}
	if h.Rows == 0 {
		h.Link = ZeroLink
	}
	return h, nil
}

// nextLink returns the chain position (id on a bench, seq of its station
// on a factory ledger) and prev link of the next serial assertion, inside
// the write transaction that inserts it: on a bench the write lock is held
// since BEGIN; on a factory ledger a lock per station is taken here.
func nextLink(ctx context.Context, tx *txn, station string) (id int64, prev string, err error) {
	var last sql.NullInt64
	var link sql.NullString
	if tx.d == postgresDialect {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext(?))`, "chain:"+station); err != nil {
			return 0, "", err
		}
	}
	key := tx.d.chainOf(station)
	err = tx.QueryRowContext(ctx, `SELECT `+tx.d.chainSeq()+`, link_sha256 FROM serial_assertions WHERE `+tx.d.chainKey()+` = ?
		ORDER BY `+tx.d.chainSeq()+` DESC LIMIT 1`, key).Scan(&last, &link)
	switch {
	case err == sql.ErrNoRows:
		return 1, ZeroLink, nil
	case err != nil:
		return 0, "", err
	}
	return last.Int64 + 1, link.String, nil
}

// chainExisting is version 3's Go step: it chains the serial assertions
// recorded before version 3, in id order, as they are, a thousand rows at
// a time (a ledger of months holds a million).
func chainExisting(ctx context.Context, tx *txn) error {
	update, err := tx.PrepareContext(ctx, `UPDATE serial_assertions SET prev_sha256 = ?, link_sha256 = ? WHERE id = ?`)
	if err != nil {
		return err
	}
	defer update.Close()
	prev := ZeroLink
	var after int64
	for {
		page, err := chainPage(ctx, tx, after, 1000)
		if err != nil || len(page) == 0 {
			return err
		}
		for _, r := range page {
			link := chainLink(prev, r)
			if _, err := update.ExecContext(ctx, prev, link, r.id); err != nil {
				return err
			}
			prev, after = link, r.id
		}
	}
}

// chainPage reads up to n rows after id after.
func chainPage(ctx context.Context, tx *txn, after int64, n int) ([]chainRow, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, text_sha256, brand_id, model, serial, revision, device_key_id, line_id, via,
		duplicate, received_at FROM serial_assertions WHERE id > ? ORDER BY id LIMIT ?`, after, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []chainRow
	for rows.Next() {
		var r chainRow
		if err := rows.Scan(&r.id, &r.textSHA256, &r.brand, &r.model, &r.serial, &r.revision, &r.deviceKeyID, &r.lineID,
			&r.via, &r.duplicate, &r.receivedAt); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
