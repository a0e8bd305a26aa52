-- flashstation factory ledger, schema version 7: the factory's own figures
-- (every line of a day, and each bench of it: status --ledger without
-- --line, supervise's board) read from indexes too, as a line's do since
-- version 2 (a day of the whole factory took 11.5 s on a 10,000,000-unit
-- ledger: its units by time and its assertions by time were read from the
-- tables).
DROP INDEX units_started;
CREATE INDEX units_started_figures ON units(started_at)
	INCLUDE (id, batch_id, line_id, station_id, hw_serial, state, reason, slot_id, flash_ms, verify_ms, boot_ms, finished_at);
DROP INDEX units_station_started;
CREATE INDEX units_station_started_figures ON units(station_id, started_at)
	INCLUDE (id, batch_id, line_id, hw_serial, state, reason, slot_id, flash_ms, verify_ms, boot_ms, finished_at);
CREATE INDEX serial_assertions_received_figures ON serial_assertions(received_at)
	INCLUDE (line_id, station_id, duplicate, unit_id);
