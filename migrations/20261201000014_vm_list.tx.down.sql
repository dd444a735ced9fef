DROP INDEX vms_created;
--bun:split
DROP INDEX vms_state_name;
