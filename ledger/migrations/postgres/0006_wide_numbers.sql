-- flashstation factory ledger, schema version 6: numbers as wide as the
-- bench's (SQLite's integers are 64-bit): a batch planned for more than
-- 2^31 boards, or an assertion of such a revision, must not stop a bench's
-- forwarding for good.
ALTER TABLE batches ALTER COLUMN planned TYPE BIGINT;
ALTER TABLE serial_assertions ALTER COLUMN revision TYPE BIGINT;
