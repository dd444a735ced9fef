-- Choices the manager made once and keeps: the bridge network it picked for itself
-- (bridge_cidr), so that every later start reuses it and the guests' addresses stay valid.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at {{.Time}} NOT NULL
);
