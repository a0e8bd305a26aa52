-- flashstation factory ledger, schema version 3: the console transcripts
-- travel with their rows, so QA reads them from any bench's record.
-- The file itself, zstd-compressed; NULL when the bench could not read it,
-- it changed since it was recorded, or it was too big.
ALTER TABLE transcripts ADD COLUMN content BYTEA;
