-- A one-click agent install of a VM on another node is queued like its lifecycle
-- actions: the action CHECK grows by one value (as migration 16 widened the VM states:
-- PostgreSQL replaces the constraint, SQLite's schema text is edited).
{{if eq .Name "pg"}}
ALTER TABLE vm_actions DROP CONSTRAINT vm_actions_action_check;
--bun:split
ALTER TABLE vm_actions ADD CONSTRAINT vm_actions_action_check CHECK (action IN ('start', 'stop', 'restart', 'pause', 'resume', 'delete', 'install'));
{{else}}
PRAGMA writable_schema = ON;
--bun:split
UPDATE sqlite_schema SET sql = replace(sql, '''resume'', ''delete'')', '''resume'', ''delete'', ''install'')')
WHERE type = 'table' AND name = 'vm_actions';
--bun:split
PRAGMA writable_schema = RESET;
--bun:split
-- Bumps the schema version, so that every connection reads the edited schema again.
CREATE TABLE install_action_schema_bump (x INTEGER);
--bun:split
DROP TABLE install_action_schema_bump;
{{end}}
