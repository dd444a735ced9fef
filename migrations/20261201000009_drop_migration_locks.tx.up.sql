-- Migrations no longer lock with a row in bun's bun_migration_locks, which a start-up
-- cancelled at the wrong moment could leave set for good; the store's one-transaction
-- migrations lock with PostgreSQL's advisory locks or SQLite's write lock instead. A row
-- left by an older manager goes with the table.
DROP TABLE IF EXISTS bun_migration_locks;
