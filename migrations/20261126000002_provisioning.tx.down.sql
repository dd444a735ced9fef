ALTER TABLE vms DROP COLUMN provisioned;
--bun:split
ALTER TABLE vms DROP COLUMN host_key_source;
--bun:split
ALTER TABLE vms DROP COLUMN host_key;
--bun:split
ALTER TABLE vms DROP COLUMN agent_token;
