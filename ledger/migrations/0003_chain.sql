-- flashstation ledger, schema version 3: a tamper-evident record.
-- Serial assertions are append-only and hash-chained: each row carries the
-- link of the row before it (prev_sha256) and its own link (link_sha256),
-- SHA-256 of the previous link and the row's canonical bytes (chain.go
-- defines them and computes the links in Go, in the transaction that
-- inserts the row; this step's Go part chains the rows already there).
-- Finished units are never changed, and no unit is deleted.
-- Verify (verify.go) checks that every trigger below is in the ledger
-- exactly as written here: a dropped or rewritten trigger is tampering.

ALTER TABLE serial_assertions ADD COLUMN prev_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE serial_assertions ADD COLUMN link_sha256 TEXT NOT NULL DEFAULT '';

-- Version 1 guarded only text and text_sha256: now every column. The one
-- change allowed is the ledger's own: an assertion recorded before its
-- unit was known is linked to it once (unit_id NULL becomes set), and a
-- row recorded before version 3 gets its links once (this migration).
DROP TRIGGER serial_assertions_keep_text;
CREATE TRIGGER serial_assertions_append_only BEFORE UPDATE ON serial_assertions
WHEN NEW.id IS NOT OLD.id OR NEW.text IS NOT OLD.text OR NEW.text_sha256 IS NOT OLD.text_sha256
	OR NEW.brand_id IS NOT OLD.brand_id OR NEW.model IS NOT OLD.model OR NEW.serial IS NOT OLD.serial
	OR NEW.revision IS NOT OLD.revision OR NEW.device_key_id IS NOT OLD.device_key_id
	OR NEW.line_id IS NOT OLD.line_id OR NEW.via IS NOT OLD.via OR NEW.duplicate IS NOT OLD.duplicate
	OR NEW.received_at IS NOT OLD.received_at
	OR (NEW.unit_id IS NOT OLD.unit_id AND OLD.unit_id IS NOT NULL)
	OR ((NEW.prev_sha256 IS NOT OLD.prev_sha256 OR NEW.link_sha256 IS NOT OLD.link_sha256) AND OLD.link_sha256 != '')
BEGIN SELECT RAISE(ABORT, 'recorded serial assertions are never changed'); END;

-- A unit is written while it runs (UpdateUnit, FinishUnit,
-- InterruptRunning); once it has an outcome it is the record of that board.
CREATE TRIGGER units_finished_no_update BEFORE UPDATE ON units
WHEN OLD.state != 'running'
BEGIN SELECT RAISE(ABORT, 'finished units are never changed'); END;
CREATE TRIGGER units_no_delete BEFORE DELETE ON units
BEGIN SELECT RAISE(ABORT, 'units are never deleted'); END;
