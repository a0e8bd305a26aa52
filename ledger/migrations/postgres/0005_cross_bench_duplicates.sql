-- flashstation factory ledger, schema version 5: the serials and device
-- keys recorded by more than one bench, found once, when the second
-- bench's assertion arrives (in the forward's transaction), instead of by
-- joining millions of assertions whenever a supervisor or a bench asks.
-- Each assertion involved has a row (both benches' records stay).
CREATE TABLE cross_bench_duplicates (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind        TEXT NOT NULL CHECK (kind IN ('serial', 'device-key')),
	value       TEXT NOT NULL,
	serial      TEXT NOT NULL,
	line_id     TEXT NOT NULL,
	station_id  TEXT NOT NULL,
	uid         TEXT NOT NULL,
	received_at TEXT NOT NULL,
	UNIQUE (kind, uid)
);
CREATE INDEX cross_bench_duplicates_value ON cross_bench_duplicates(kind, value);
CREATE INDEX cross_bench_duplicates_line ON cross_bench_duplicates(line_id, received_at);
CREATE INDEX cross_bench_duplicates_station ON cross_bench_duplicates(station_id, id);

-- What the ledger holds already.
INSERT INTO cross_bench_duplicates(kind, value, serial, line_id, station_id, uid, received_at)
SELECT 'serial', a.brand_id || '/' || a.model || '/' || a.serial, a.serial, a.line_id, a.station_id, a.uid, a.received_at
FROM serial_assertions a JOIN (
	SELECT brand_id, model, serial FROM serial_assertions GROUP BY brand_id, model, serial HAVING count(DISTINCT station_id) > 1
) d ON d.brand_id = a.brand_id AND d.model = a.model AND d.serial = a.serial
ORDER BY a.id;
INSERT INTO cross_bench_duplicates(kind, value, serial, line_id, station_id, uid, received_at)
SELECT 'device-key', a.device_key_id, a.serial, a.line_id, a.station_id, a.uid, a.received_at
FROM serial_assertions a JOIN (
	SELECT device_key_id FROM serial_assertions GROUP BY device_key_id HAVING count(DISTINCT station_id) > 1
) d ON d.device_key_id = a.device_key_id
ORDER BY a.id;
