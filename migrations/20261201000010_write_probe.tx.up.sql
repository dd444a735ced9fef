-- One row /healthz rewrites (at most every few seconds) to prove the database still takes
-- writes: a full disk answers reads but refuses writes.
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY,
    at {{.Time}} NOT NULL
);
