-- A VM may be paused: its hypervisor runs with the guest's vCPUs frozen. The state CHECK
-- grows by one value. PostgreSQL replaces the constraint; SQLite cannot alter one, so its
-- text in the schema is edited (the way SQLite's documentation gives for loosening a
-- constraint: existing rows stay valid). RESET makes this connection read the edited
-- schema again; the CREATE TABLE below bumps the schema version, so the others do too.
{{if eq .Name "pg"}}
ALTER TABLE vms DROP CONSTRAINT vms_state_check;
--bun:split
ALTER TABLE vms ADD CONSTRAINT vms_state_check CHECK (state IN ('defined', 'starting', 'running', 'paused', 'stopping', 'stopped', 'failed'));
{{else}}
PRAGMA writable_schema = ON;
--bun:split
UPDATE sqlite_schema SET sql = replace(sql, '''running'', ''stopping''', '''running'', ''paused'', ''stopping''')
WHERE type = 'table' AND name = 'vms';
--bun:split
PRAGMA writable_schema = RESET;
{{end}}
--bun:split
-- One row per snapshot, which is also the job that takes it ('taking' until its files
-- under the VM's directory are complete).
CREATE TABLE snapshots (
    vm_id       TEXT NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('taking', 'ready', 'failed')),
    kind        TEXT NOT NULL CHECK (kind IN ('full', 'diff')),
    driver      TEXT NOT NULL,
    vcpus       INTEGER NOT NULL,
    memory_mib  INTEGER NOT NULL,
    size_bytes  BIGINT NOT NULL DEFAULT 0,
    took_ms     BIGINT NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    created_at  {{.Time}} NOT NULL,
    finished_at {{.Time}},
    PRIMARY KEY (vm_id, name)
);
