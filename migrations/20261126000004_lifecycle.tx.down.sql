ALTER TABLE vms DROP COLUMN state_reason;
--bun:split
ALTER TABLE vms DROP COLUMN running_driver;
--bun:split
ALTER TABLE vms DROP COLUMN pid;
--bun:split
ALTER TABLE vms DROP COLUMN hypervisor;
