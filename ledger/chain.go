package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
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
	fields := []string{strconv.FormatInt(r.id, 10), r.textSHA256, r.brand, r.model, r.serial,
		strconv.FormatInt(r.revision, 10), r.deviceKeyID, r.lineID, r.via, dup, r.receivedAt}
	var b []byte
	for _, f := range fields {
		b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
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

// ChainHead returns the chain's current head.
func (l *Ledger) ChainHead(ctx context.Context) (ChainHead, error) {
	return chainHead(ctx, l.r)
}

func chainHead(ctx context.Context, q querier) (ChainHead, error) {
	h := ChainHead{Link: ZeroLink}
	err := q.QueryRowContext(ctx, `SELECT count(*), coalesce((SELECT link_sha256 FROM serial_assertions ORDER BY id DESC LIMIT 1), '')
		FROM serial_assertions`).Scan(&h.Rows, &h.Link)
	if err != nil {
		return h, fmt.Errorf("ledger: chain head: %w", err)
	}
	if h.Rows == 0 {
		h.Link = ZeroLink
	}
	return h, nil
}

// nextLink returns the id and prev link of the next serial assertion
// (inside the write transaction that inserts it).
func nextLink(ctx context.Context, tx *txn) (id int64, prev string, err error) {
	var last sql.NullInt64
	var link sql.NullString
	err = tx.QueryRowContext(ctx, `SELECT id, link_sha256 FROM serial_assertions ORDER BY id DESC LIMIT 1`).Scan(&last, &link)
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
