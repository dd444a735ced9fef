ALTER TABLE samples_1m DROP COLUMN page_in;
--bun:split
ALTER TABLE samples_1m DROP COLUMN prog_write;
--bun:split
ALTER TABLE samples DROP COLUMN page_in;
--bun:split
ALTER TABLE samples DROP COLUMN prog_write;
