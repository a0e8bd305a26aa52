-- flashstation factory ledger, schema version 8: the image identity of
-- each batch, as the bench records it since its schema version 5: the
-- SHA3-384 of the model assertion (model_digest, base64url), the recovery
-- system label (seed_label, empty on UC16 and UC18), the key that signed
-- the model (model_sign_key), and the seal over them (image_seal, defined
-- in ledger/chain.go). Benches send the seal they computed; the batches
-- already here are sealed by ledger_batch_seal, the same SHA-256 in SQL,
-- with their identity empty, so they verify as they were recorded.
ALTER TABLE batches ADD COLUMN model_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN seed_label TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN model_sign_key TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN image_seal TEXT NOT NULL DEFAULT '';

-- Each field as its length (8 bytes, big-endian) and its UTF-8 bytes.
CREATE FUNCTION ledger_batch_seal(uid TEXT, station_id TEXT, line_id TEXT, image_sha256 TEXT, model_digest TEXT,
	seed_label TEXT, model_sign_key TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
	SELECT encode(sha256(
		int8send(octet_length(convert_to(uid, 'UTF8'))::bigint) || convert_to(uid, 'UTF8') ||
		int8send(octet_length(convert_to(station_id, 'UTF8'))::bigint) || convert_to(station_id, 'UTF8') ||
		int8send(octet_length(convert_to(line_id, 'UTF8'))::bigint) || convert_to(line_id, 'UTF8') ||
		int8send(octet_length(convert_to(image_sha256, 'UTF8'))::bigint) || convert_to(image_sha256, 'UTF8') ||
		int8send(octet_length(convert_to(model_digest, 'UTF8'))::bigint) || convert_to(model_digest, 'UTF8') ||
		int8send(octet_length(convert_to(seed_label, 'UTF8'))::bigint) || convert_to(seed_label, 'UTF8') ||
		int8send(octet_length(convert_to(model_sign_key, 'UTF8'))::bigint) || convert_to(model_sign_key, 'UTF8')), 'hex')
$$;

UPDATE batches SET image_seal = ledger_batch_seal(uid, station_id, line_id, image_sha256, model_digest, seed_label, model_sign_key);

-- A batch keeps the image it was started with (closing it changes its
-- state only), as on the bench.
CREATE FUNCTION ledger_batch_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id IS DISTINCT FROM OLD.id OR NEW.uid IS DISTINCT FROM OLD.uid OR NEW.station_id IS DISTINCT FROM OLD.station_id
		OR NEW.line_id IS DISTINCT FROM OLD.line_id OR NEW.image_sha256 IS DISTINCT FROM OLD.image_sha256
		OR NEW.model_digest IS DISTINCT FROM OLD.model_digest OR NEW.seed_label IS DISTINCT FROM OLD.seed_label
		OR NEW.model_sign_key IS DISTINCT FROM OLD.model_sign_key OR NEW.image_seal IS DISTINCT FROM OLD.image_seal THEN
		RAISE EXCEPTION 'a batch keeps its image identity' USING ERRCODE = 'integrity_constraint_violation';
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER batches_keep_image BEFORE UPDATE ON batches
	FOR EACH ROW EXECUTE FUNCTION ledger_batch_guard();
