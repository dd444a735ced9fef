-- Metrics history. Raw samples are kept for 24 h, then folded into one-minute averages
-- kept for 7 days. No foreign key: a deleted VM's history simply ages out.
CREATE TABLE samples (
    vm_id      TEXT NOT NULL,
    at         {{.Time}} NOT NULL,
    source     TEXT NOT NULL,
    cpu        DOUBLE PRECISION,
    mem        DOUBLE PRECISION,
    host_rss   BIGINT,
    net_rx     DOUBLE PRECISION,
    net_tx     DOUBLE PRECISION,
    disk_read  DOUBLE PRECISION,
    disk_write DOUBLE PRECISION
);
--bun:split
CREATE INDEX samples_vm_at ON samples (vm_id, at);
--bun:split
CREATE INDEX samples_at ON samples (at);
--bun:split
CREATE TABLE samples_1m (
    vm_id      TEXT NOT NULL,
    minute     {{.Time}} NOT NULL,
    n          INTEGER NOT NULL,
    cpu        DOUBLE PRECISION,
    mem        DOUBLE PRECISION,
    net_rx     DOUBLE PRECISION,
    net_tx     DOUBLE PRECISION,
    disk_read  DOUBLE PRECISION,
    disk_write DOUBLE PRECISION,
    PRIMARY KEY (vm_id, minute)
);
