-- One row per agent install run; steps is a JSON array of {name, state, detail}.
-- Credentials typed for a run are never stored.
CREATE TABLE install_jobs (
    id          TEXT PRIMARY KEY,
    vm_id       TEXT NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
    state       TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    steps       TEXT NOT NULL,
    error       TEXT NOT NULL DEFAULT '',
    created_at  {{.Time}} NOT NULL,
    updated_at  {{.Time}} NOT NULL,
    finished_at {{.Time}}
);
--bun:split
CREATE INDEX install_jobs_vm ON install_jobs (vm_id, created_at);
