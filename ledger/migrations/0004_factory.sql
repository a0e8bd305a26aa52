-- flashstation ledger, schema version 4: ready for a factory ledger.
-- Every row carries its station and a globally unique id (uid, a UUIDv7:
-- its first 48 bits are the row's time in milliseconds), so rows from
-- many benches merge without colliding. The integer ids stay the bench's
-- own. The outbox lists, in order, the rows to forward to the factory
-- ledger; its triggers fill it only while forwarding is on (a bench
-- without a factory ledger keeps no outbox), and EnableForwarding
-- queues what the bench recorded before.

-- The guards are dropped while the rows get their ids, and made again
-- below with uid and station_id guarded too.
DROP TRIGGER units_finished_no_update;
DROP TRIGGER events_no_update;
DROP TRIGGER serial_assertions_append_only;

ALTER TABLE batches ADD COLUMN uid TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN station_id TEXT NOT NULL DEFAULT '';
ALTER TABLE units ADD COLUMN uid TEXT NOT NULL DEFAULT '';
ALTER TABLE units ADD COLUMN station_id TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN uid TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN station_id TEXT NOT NULL DEFAULT '';
ALTER TABLE serial_assertions ADD COLUMN uid TEXT NOT NULL DEFAULT '';
ALTER TABLE serial_assertions ADD COLUMN station_id TEXT NOT NULL DEFAULT '';
ALTER TABLE transcripts ADD COLUMN uid TEXT NOT NULL DEFAULT '';
ALTER TABLE transcripts ADD COLUMN station_id TEXT NOT NULL DEFAULT '';

-- A UUIDv7 from a recorded time: 48 bits of milliseconds, version 7, 74
-- random bits (printf and random() are SQLite's; NewUID makes the same
-- form in Go).
UPDATE batches SET station_id = coalesce((SELECT station_id FROM lines WHERE lines.id = batches.line_id), ''),
	uid = printf('%08x-%04x-7%03x-%04x-%012x',
		CAST(round((julianday(started_at) - 2440587.5) * 86400000) AS INTEGER) >> 16,
		CAST(round((julianday(started_at) - 2440587.5) * 86400000) AS INTEGER) & 65535,
		random() & 4095, 32768 + (random() & 16383), random() & 281474976710655);
UPDATE units SET station_id = coalesce((SELECT station_id FROM batches WHERE batches.id = units.batch_id), ''),
	uid = printf('%08x-%04x-7%03x-%04x-%012x',
		CAST(round((julianday(started_at) - 2440587.5) * 86400000) AS INTEGER) >> 16,
		CAST(round((julianday(started_at) - 2440587.5) * 86400000) AS INTEGER) & 65535,
		random() & 4095, 32768 + (random() & 16383), random() & 281474976710655);
UPDATE events SET station_id = coalesce((SELECT station_id FROM batches WHERE batches.id = events.batch_id),
		(SELECT id FROM stations ORDER BY created_at, id LIMIT 1), ''),
	uid = printf('%08x-%04x-7%03x-%04x-%012x',
		CAST(round((julianday(at) - 2440587.5) * 86400000) AS INTEGER) >> 16,
		CAST(round((julianday(at) - 2440587.5) * 86400000) AS INTEGER) & 65535,
		random() & 4095, 32768 + (random() & 16383), random() & 281474976710655);
UPDATE serial_assertions SET station_id = coalesce((SELECT station_id FROM lines WHERE lines.id = serial_assertions.line_id),
		(SELECT id FROM stations ORDER BY created_at, id LIMIT 1), ''),
	uid = printf('%08x-%04x-7%03x-%04x-%012x',
		CAST(round((julianday(received_at) - 2440587.5) * 86400000) AS INTEGER) >> 16,
		CAST(round((julianday(received_at) - 2440587.5) * 86400000) AS INTEGER) & 65535,
		random() & 4095, 32768 + (random() & 16383), random() & 281474976710655);
UPDATE transcripts SET station_id = coalesce((SELECT station_id FROM units WHERE units.id = transcripts.unit_id),
		(SELECT id FROM stations ORDER BY created_at, id LIMIT 1), ''),
	uid = printf('%08x-%04x-7%03x-%04x-%012x',
		CAST(round((julianday(created_at) - 2440587.5) * 86400000) AS INTEGER) >> 16,
		CAST(round((julianday(created_at) - 2440587.5) * 86400000) AS INTEGER) & 65535,
		random() & 4095, 32768 + (random() & 16383), random() & 281474976710655);

CREATE UNIQUE INDEX batches_uid ON batches(uid);
CREATE UNIQUE INDEX units_uid ON units(uid);
CREATE UNIQUE INDEX events_uid ON events(uid);
CREATE UNIQUE INDEX serial_assertions_uid ON serial_assertions(uid);
CREATE UNIQUE INDEX transcripts_uid ON transcripts(uid);
CREATE INDEX units_station_running ON units(station_id, state);

CREATE TRIGGER units_finished_no_update BEFORE UPDATE ON units
WHEN OLD.state != 'running'
BEGIN SELECT RAISE(ABORT, 'finished units are never changed'); END;
CREATE TRIGGER units_keep_identity BEFORE UPDATE OF uid, station_id ON units
BEGIN SELECT RAISE(ABORT, 'a unit keeps its uid and station'); END;
CREATE TRIGGER batches_keep_identity BEFORE UPDATE OF uid, station_id ON batches
BEGIN SELECT RAISE(ABORT, 'a batch keeps its uid and station'); END;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER serial_assertions_append_only BEFORE UPDATE ON serial_assertions
WHEN NEW.id IS NOT OLD.id OR NEW.text IS NOT OLD.text OR NEW.text_sha256 IS NOT OLD.text_sha256
	OR NEW.brand_id IS NOT OLD.brand_id OR NEW.model IS NOT OLD.model OR NEW.serial IS NOT OLD.serial
	OR NEW.revision IS NOT OLD.revision OR NEW.device_key_id IS NOT OLD.device_key_id
	OR NEW.line_id IS NOT OLD.line_id OR NEW.via IS NOT OLD.via OR NEW.duplicate IS NOT OLD.duplicate
	OR NEW.received_at IS NOT OLD.received_at OR NEW.uid IS NOT OLD.uid OR NEW.station_id IS NOT OLD.station_id
	OR (NEW.unit_id IS NOT OLD.unit_id AND OLD.unit_id IS NOT NULL)
	OR ((NEW.prev_sha256 IS NOT OLD.prev_sha256 OR NEW.link_sha256 IS NOT OLD.link_sha256) AND OLD.link_sha256 != '')
BEGIN SELECT RAISE(ABORT, 'recorded serial assertions are never changed'); END;

-- Forwarding to a factory ledger: one row while it is on, naming the
-- factory ledger (its own id, so a bench pointed at another one sends
-- everything again).
CREATE TABLE forwarding (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	factory_id TEXT NOT NULL,
	since      TEXT NOT NULL
) STRICT;

-- What is still to send, in the order it was recorded: the table and the
-- row (the row is read when it is sent, as it is then). Sent entries are
-- removed.
CREATE TABLE outbox (
	seq    INTEGER PRIMARY KEY,
	tbl    TEXT NOT NULL,
	row_id INTEGER NOT NULL
) STRICT;

CREATE TRIGGER outbox_stations_insert AFTER INSERT ON stations WHEN EXISTS (SELECT 1 FROM forwarding)
BEGIN INSERT INTO outbox(tbl, row_id) VALUES ('stations', NEW.rowid); END;
CREATE TRIGGER outbox_stations_update AFTER UPDATE ON stations WHEN EXISTS (SELECT 1 FROM forwarding)
BEGIN INSERT INTO outbox(tbl, row_id) VALUES ('stations', NEW.rowid); END;
CREATE TRIGGER outbox_lines_insert AFTER INSERT ON lines WHEN EXISTS (SELECT 1 FROM forwarding)
BEGIN INSERT INTO outbox(tbl, row_id) VALUES ('lines', NEW.rowid); END;
CREATE TRIGGER outbox_lines_update AFTER UPDATE ON lines WHEN EXISTS (SELECT 1 FROM forwarding)
BEGIN INSERT INTO outbox(tbl, row_id) VALUES ('lines', NEW.rowid); END;
CREATE TRIGGER outbox_batches_insert AFTER INSERT ON batches WHEN EXISTS (SELECT 1 FROM forwarding)
BEGIN INSERT INTO outbox(tbl, row_id) VALUES ('batches', NEW.id); END;
CREATE TRIGGER outbox_batches_update AFTER UPDATE ON batches WHEN EXISTS (SELECT 1 FROM forwarding)
BEGIN INSERT INTO outbox(tbl, row_id) VALUES ('batches', NEW.id); END;
CREATE TRIGGER outbox_units_insert AFTER INSERT ON units WHEN EXISTS (SELECT 1 FROM forwarding)
BEGIN INSERT INTO outbox(tbl, row_id) VALUES ('units', NEW.id); END;
CREATE TRIGGER outbox_units_update AFTER UPDATE ON units WHEN EXISTS (SELECT 1 FROM forwarding)
BEGIN INSERT INTO outbox(tbl, row_id) VALUES ('units', NEW.id); END;
CREATE TRIGGER outbox_events_insert AFTER INSERT ON events WHEN EXISTS (SELECT 1 FROM forwarding)
BEGIN INSERT INTO outbox(tbl, row_id) VALUES ('events', NEW.id); END;
CREATE TRIGGER outbox_serial_assertions_insert AFTER INSERT ON serial_assertions WHEN EXISTS (SELECT 1 FROM forwarding)
BEGIN INSERT INTO outbox(tbl, row_id) VALUES ('serial_assertions', NEW.id); END;
CREATE TRIGGER outbox_serial_assertions_update AFTER UPDATE ON serial_assertions WHEN EXISTS (SELECT 1 FROM forwarding)
BEGIN INSERT INTO outbox(tbl, row_id) VALUES ('serial_assertions', NEW.id); END;
CREATE TRIGGER outbox_transcripts_insert AFTER INSERT ON transcripts WHEN EXISTS (SELECT 1 FROM forwarding)
BEGIN INSERT INTO outbox(tbl, row_id) VALUES ('transcripts', NEW.id); END;

-- What the factory ledger told this bench: its serial or device key
-- recorded by another bench too (both keep their records; both benches
-- and the factory's figures name it). Bench-local, never forwarded.
CREATE TABLE factory_flags (
	id            INTEGER PRIMARY KEY,
	kind          TEXT NOT NULL CHECK (kind IN ('serial', 'device-key')),
	value         TEXT NOT NULL,
	serial        TEXT NOT NULL,
	other_station TEXT NOT NULL,
	other_uid     TEXT NOT NULL,
	found_at      TEXT NOT NULL,
	UNIQUE (kind, other_uid)
) STRICT;
