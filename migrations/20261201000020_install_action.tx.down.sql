-- Queued installs go (they were asked of nodes that may never have run them).
DELETE FROM vm_actions WHERE action = 'install';
{{if eq .Name "pg"}}
--bun:split
ALTER TABLE vm_actions DROP CONSTRAINT vm_actions_action_check;
--bun:split
ALTER TABLE vm_actions ADD CONSTRAINT vm_actions_action_check CHECK (action IN ('start', 'stop', 'restart', 'pause', 'resume', 'delete'));
{{else}}
--bun:split
PRAGMA writable_schema = ON;
--bun:split
UPDATE sqlite_schema SET sql = replace(sql, '''resume'', ''delete'', ''install'')', '''resume'', ''delete'')')
WHERE type = 'table' AND name = 'vm_actions';
--bun:split
PRAGMA writable_schema = RESET;
{{end}}
