-- What the guest's programs did besides what its disks saw (from the agent's page-cache
-- counters), per second: bytes written into the page cache and bytes read from disks.
ALTER TABLE samples ADD COLUMN prog_write DOUBLE PRECISION;
--bun:split
ALTER TABLE samples ADD COLUMN page_in DOUBLE PRECISION;
--bun:split
ALTER TABLE samples_1m ADD COLUMN prog_write DOUBLE PRECISION;
--bun:split
ALTER TABLE samples_1m ADD COLUMN page_in DOUBLE PRECISION;
