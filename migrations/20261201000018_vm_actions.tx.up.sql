-- Actions asked of a VM on another node: carried out by the VM's node, which hears of them
-- through NOTIFY hearth_actions (payload: the node's name) and sweeps the queue. No
-- foreign key: a carried-out delete keeps its action's record.
CREATE TABLE vm_actions (
    id          TEXT PRIMARY KEY,
    vm_id       TEXT NOT NULL,
    node        TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('start', 'stop', 'restart', 'pause', 'resume', 'delete')),
    actor       TEXT NOT NULL,
    addr        TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    error       TEXT NOT NULL DEFAULT '',
    created_at  {{.Time}} NOT NULL,
    finished_at {{.Time}}
);
--bun:split
CREATE INDEX vm_actions_node_state ON vm_actions (node, state, created_at);
