-- foreign-keys: off
-- flashstation ledger, schema version 2: outcome classes and batch closing.
-- A unit ends pass, fail (the board's fault), error (the station's fault:
-- storage, trigger, vault) or aborted (the operator quit, the station
-- stopped, the batch ended); version 1's 'interrupted' becomes 'aborted'.
-- A batch records why it closed.

CREATE TABLE units_v2 (
	id            INTEGER PRIMARY KEY,
	batch_id      INTEGER NOT NULL REFERENCES batches(id),
	line_id       TEXT NOT NULL REFERENCES lines(id),
	slot_id       TEXT NOT NULL,
	attempt       INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
	hw_serial     TEXT NOT NULL DEFAULT '',
	serial        TEXT NOT NULL DEFAULT '',
	state         TEXT NOT NULL DEFAULT 'running'
	              CHECK (state IN ('running', 'pass', 'fail', 'error', 'aborted')),
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

-- Version 1 wrote every failure as 'fail'; the station's faults become
-- 'error' by their reason code, a stop 'aborted' (the classes of the
-- README's reason table, as they were when version 2 was made).
INSERT INTO units_v2 SELECT id, batch_id, line_id, slot_id, attempt, hw_serial, serial,
	CASE
		WHEN state = 'interrupted' OR (state = 'fail' AND reason IN ('interrupted', 'cancelled')) THEN 'aborted'
		WHEN state = 'fail' AND reason IN ('busy', 'mounted', 'system-disk', 'not-usb', 'image-refused', 'baud-mismatch',
			'console-unplugged', 'port-busy', 'port-missing', 'port-permission', 'port-error', 'console-conf',
			'login-failed', 'registration-failed', 'vault-refused', 'assertion-invalid', 'trigger-failed',
			'storage-error') THEN 'error'
		ELSE state
	END,
	stage, reason, detail, mapped_bytes, written_bytes, flash_ms, verify_ms, boot_ms, started_at, finished_at
	FROM units;
DROP TABLE units;
ALTER TABLE units_v2 RENAME TO units;
CREATE INDEX units_batch ON units(batch_id, state);
CREATE INDEX units_hw_serial ON units(hw_serial);
CREATE INDEX units_serial ON units(serial);
CREATE INDEX units_running ON units(state) WHERE state = 'running';
CREATE INDEX units_line_started ON units(line_id, started_at);
CREATE INDEX units_started ON units(started_at);

-- complete: its planned boards are done; operator: ended at the bench;
-- stopped: the station stopped cleanly with the batch open.
ALTER TABLE batches ADD COLUMN close_reason TEXT NOT NULL DEFAULT ''
	CHECK (close_reason IN ('', 'complete', 'operator', 'stopped'));
