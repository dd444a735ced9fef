DROP TABLE snapshots;
--bun:split
UPDATE vms SET state = 'running' WHERE state = 'paused';
--bun:split
{{if eq .Name "pg"}}
ALTER TABLE vms DROP CONSTRAINT vms_state_check;
--bun:split
ALTER TABLE vms ADD CONSTRAINT vms_state_check CHECK (state IN ('defined', 'starting', 'running', 'stopping', 'stopped', 'failed'));
{{else}}
PRAGMA writable_schema = ON;
--bun:split
UPDATE sqlite_schema SET sql = replace(sql, '''running'', ''paused'', ''stopping''', '''running'', ''stopping''')
WHERE type = 'table' AND name = 'vms';
--bun:split
PRAGMA writable_schema = RESET;
{{end}}
