DROP INDEX vms_address;
--bun:split
ALTER TABLE vms DROP COLUMN address;
