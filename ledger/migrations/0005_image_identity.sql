-- flashstation ledger, schema version 5: the image identity of each batch.
-- The image identity gate (package seed) checks the image of a line before any
-- board; the identity of the image that passed goes with every unit of the
-- batch: the SHA3-384 of its model assertion (model_digest, base64url),
-- its recovery system label (seed_label, UC20 and later; empty on UC16
-- and UC18) and the key that signed its model (model_sign_key, the
-- sign-key-sha3-384). Batches started before version 5 have them empty.
-- image_seal is the SHA-256 of the batch canonical identity (chain.go
-- defines it; this step seals the batches already there, in Go): Verify
-- recomputes it, so a changed seed label shows even where the trigger
-- below was dropped.

ALTER TABLE batches ADD COLUMN model_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN seed_label TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN model_sign_key TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN image_seal TEXT NOT NULL DEFAULT '';

-- A batch is started with its image; closing it changes its state only.
-- The one change allowed is the ledger own: a batch recorded before
-- version 5 gets its seal once (this migration).
CREATE TRIGGER batches_keep_image BEFORE UPDATE ON batches
WHEN NEW.id IS NOT OLD.id OR NEW.line_id IS NOT OLD.line_id OR NEW.image_sha256 IS NOT OLD.image_sha256
	OR NEW.model_digest IS NOT OLD.model_digest OR NEW.seed_label IS NOT OLD.seed_label
	OR NEW.model_sign_key IS NOT OLD.model_sign_key
	OR (NEW.image_seal IS NOT OLD.image_seal AND OLD.image_seal != '')
BEGIN SELECT RAISE(ABORT, 'a batch keeps its image identity'); END;
