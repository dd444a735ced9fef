CREATE TABLE vms (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    state               TEXT NOT NULL CHECK (state IN ('defined', 'starting', 'running', 'stopping', 'stopped', 'failed')),
    vcpus               INTEGER NOT NULL CHECK (vcpus > 0),
    memory_mib          INTEGER NOT NULL CHECK (memory_mib > 0),
    kernel              TEXT NOT NULL DEFAULT '',
    initrd              TEXT NOT NULL DEFAULT '',
    rootfs              TEXT NOT NULL DEFAULT '',
    boot_args           TEXT NOT NULL DEFAULT '',
    mac                 TEXT NOT NULL,
    guest_ip            TEXT,
    guest_ip_source     TEXT CHECK (guest_ip_source IN ('callback', 'agent', 'manual')),
    guest_ip_updated_at {{.Time}},
    created_at          {{.Time}} NOT NULL,
    updated_at          {{.Time}} NOT NULL
);
--bun:split
CREATE TABLE users (
    id            {{.Serial}},
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    {{.Time}} NOT NULL,
    updated_at    {{.Time}} NOT NULL
);
--bun:split
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   {{.Time}} NOT NULL,
    expires_at   {{.Time}} NOT NULL,
    addr         TEXT NOT NULL DEFAULT '',
    user_agent   TEXT NOT NULL DEFAULT ''
);
--bun:split
CREATE INDEX sessions_user_id ON sessions (user_id);
--bun:split
CREATE TABLE api_tokens (
    id           {{.Serial}},
    name         TEXT NOT NULL UNIQUE,
    hash         TEXT NOT NULL UNIQUE,
    created_at   {{.Time}} NOT NULL,
    last_used_at {{.Time}}
);
--bun:split
CREATE TABLE registration_tokens (
    vm_id      TEXT PRIMARY KEY REFERENCES vms (id) ON DELETE CASCADE,
    hash       TEXT NOT NULL UNIQUE,
    created_at {{.Time}} NOT NULL
);
--bun:split
-- vm_id has no foreign key on purpose: the audit log outlives the VMs it speaks of.
CREATE TABLE audit_log (
    id     {{.Serial}},
    at     {{.Time}} NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    vm_id  TEXT,
    addr   TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
--bun:split
CREATE INDEX audit_log_vm_id ON audit_log (vm_id, id);
