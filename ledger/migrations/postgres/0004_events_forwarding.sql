-- flashstation factory ledger, schema version 4: events, the bulk of what
-- benches forward (about 15 per unit), go in at the rate a busy bench
-- records them. Their batch and unit are set by the forward itself, from
-- the uids of rows sent in the same transaction (ledger/forward.go), so
-- the foreign keys' checks (two per event, 40% of a forward's time on a
-- 10,000,000-unit ledger) and the index by batch, which no query reads,
-- go.
ALTER TABLE events DROP CONSTRAINT events_batch_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_unit_id_fkey;
DROP INDEX events_batch;
