-- Several hosts on one PostgreSQL: each manager is a node, heartbeating here; each VM
-- belongs to one. VMs made before nodes existed have node '' until the first node to start
-- claims them (they were that one host's).
CREATE TABLE nodes (
    name         TEXT PRIMARY KEY,
    url          TEXT NOT NULL,
    cpus         INTEGER NOT NULL DEFAULT 0,
    memory_mib   INTEGER NOT NULL DEFAULT 0,
    network      TEXT NOT NULL DEFAULT '',
    version      TEXT NOT NULL DEFAULT '',
    interval_ms  BIGINT NOT NULL,
    started_at   {{.Time}} NOT NULL,
    heartbeat_at {{.Time}} NOT NULL
);
--bun:split
ALTER TABLE vms ADD COLUMN node TEXT NOT NULL DEFAULT '';
--bun:split
CREATE INDEX vms_node_state ON vms (node, state);
