ALTER TABLE vms DROP COLUMN registered_ip_at;
--bun:split
ALTER TABLE vms DROP COLUMN registered_ip_source;
--bun:split
ALTER TABLE vms DROP COLUMN registered_ip;
