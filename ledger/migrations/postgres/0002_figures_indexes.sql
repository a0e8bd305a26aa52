-- flashstation factory ledger, schema version 2: the supervisor's figures
-- of a line over a time (status --line --since --until; a day of a line of
-- a 10,000,000-unit ledger is 3,400 of them) read from the index alone.
-- The figures' queries use these columns only, so PostgreSQL answers them
-- with index-only scans, not with a heap page per unit: with the plain
-- (line_id, started_at) index the planner preferred the time index and
-- read every line's units of the day (a status of a line's day took
-- 230 ms; 2026-12, ledger/factory_scale_bench_test.go). Each replaces the
-- index of the same keys.
DROP INDEX units_line_started;
CREATE INDEX units_line_started_figures ON units(line_id, started_at)
	INCLUDE (id, batch_id, station_id, hw_serial, state, reason, slot_id, flash_ms, verify_ms, boot_ms, finished_at);
DROP INDEX serial_assertions_line;
CREATE INDEX serial_assertions_line_figures ON serial_assertions(line_id, received_at)
	INCLUDE (station_id, duplicate, unit_id);
