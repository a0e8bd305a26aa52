-- flashstation ledger, schema version 1.
-- Times are UTC text, 2006-01-02T15:04:05.000Z, which sorts as time does.

CREATE TABLE stations (
	id         TEXT PRIMARY KEY,
	hostname   TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL
) STRICT;

CREATE TABLE lines (
	id         TEXT PRIMARY KEY,
	station_id TEXT NOT NULL REFERENCES stations(id),
	name       TEXT NOT NULL DEFAULT '',
	brand_id   TEXT NOT NULL DEFAULT '',
	model      TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE batches (
	id           INTEGER PRIMARY KEY,
	line_id      TEXT NOT NULL REFERENCES lines(id),
	operator     TEXT NOT NULL DEFAULT '',
	planned      INTEGER NOT NULL DEFAULT 0 CHECK (planned >= 0),
	image_sha256 TEXT NOT NULL DEFAULT '',
	state        TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
	started_at   TEXT NOT NULL,
	closed_at    TEXT
) STRICT;
CREATE INDEX batches_line ON batches(line_id, started_at);

-- One row per board per attempt.
CREATE TABLE units (
	id            INTEGER PRIMARY KEY,
	batch_id      INTEGER NOT NULL REFERENCES batches(id),
	line_id       TEXT NOT NULL REFERENCES lines(id),
	slot_id       TEXT NOT NULL,
	attempt       INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
	hw_serial     TEXT NOT NULL DEFAULT '',
	serial        TEXT NOT NULL DEFAULT '',
	state         TEXT NOT NULL DEFAULT 'running'
	              CHECK (state IN ('running', 'pass', 'fail', 'interrupted')),
	stage         TEXT NOT NULL DEFAULT '',
	reason        TEXT NOT NULL DEFAULT '',
	detail        TEXT NOT NULL DEFAULT '',
	mapped_bytes  INTEGER NOT NULL DEFAULT 0,
	written_bytes INTEGER NOT NULL DEFAULT 0,
	flash_ms      INTEGER NOT NULL DEFAULT 0,
	verify_ms     INTEGER NOT NULL DEFAULT 0,
	boot_ms       INTEGER NOT NULL DEFAULT 0,
	started_at    TEXT NOT NULL,
	finished_at   TEXT
) STRICT;
CREATE INDEX units_batch ON units(batch_id, state);
CREATE INDEX units_hw_serial ON units(hw_serial);
CREATE INDEX units_serial ON units(serial);
CREATE INDEX units_running ON units(state) WHERE state = 'running';

-- Append-only: what happened, when, to which slot and unit.
CREATE TABLE events (
	id       INTEGER PRIMARY KEY,
	at       TEXT NOT NULL,
	batch_id INTEGER REFERENCES batches(id),
	unit_id  INTEGER REFERENCES units(id),
	slot_id  TEXT NOT NULL DEFAULT '',
	kind     TEXT NOT NULL,
	stage    TEXT NOT NULL DEFAULT '',
	message  TEXT NOT NULL DEFAULT '',
	data     TEXT NOT NULL DEFAULT '{}'
) STRICT;
CREATE INDEX events_unit ON events(unit_id, id);
CREATE INDEX events_batch ON events(batch_id, id);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

-- Every serial assertion the station captured, exactly as received.
CREATE TABLE serial_assertions (
	id            INTEGER PRIMARY KEY,
	text          TEXT NOT NULL,
	text_sha256   TEXT NOT NULL UNIQUE,
	brand_id      TEXT NOT NULL,
	model         TEXT NOT NULL,
	serial        TEXT NOT NULL,
	revision      INTEGER NOT NULL DEFAULT 0,
	device_key_id TEXT NOT NULL,
	line_id       TEXT NOT NULL,
	unit_id       INTEGER REFERENCES units(id),
	via           TEXT NOT NULL CHECK (via IN ('proxy', 'console', 'import')),
	duplicate     INTEGER NOT NULL DEFAULT 0 CHECK (duplicate IN (0, 1)),
	received_at   TEXT NOT NULL
) STRICT;
CREATE INDEX serial_assertions_serial ON serial_assertions(brand_id, model, serial);
CREATE INDEX serial_assertions_line ON serial_assertions(line_id, received_at);
CREATE INDEX serial_assertions_unit ON serial_assertions(unit_id);
CREATE INDEX serial_assertions_device_key ON serial_assertions(device_key_id);
CREATE TRIGGER serial_assertions_no_delete BEFORE DELETE ON serial_assertions
BEGIN SELECT RAISE(ABORT, 'recorded serial assertions are never deleted'); END;
CREATE TRIGGER serial_assertions_keep_text BEFORE UPDATE OF text, text_sha256 ON serial_assertions
BEGIN SELECT RAISE(ABORT, 'recorded serial assertions are never changed'); END;

-- Console transcripts kept as files next to the ledger.
CREATE TABLE transcripts (
	id         INTEGER PRIMARY KEY,
	unit_id    INTEGER REFERENCES units(id),
	slot_id    TEXT NOT NULL DEFAULT '',
	kind       TEXT NOT NULL CHECK (kind IN ('raw', 'clean')),
	path       TEXT NOT NULL,
	size       INTEGER NOT NULL DEFAULT 0,
	sha256     TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL
) STRICT;
CREATE INDEX transcripts_unit ON transcripts(unit_id);
