-- The VM list pages through the table: by state then name (the filter tabs and the
-- collector's running VMs), and by creation time.
CREATE INDEX vms_state_name ON vms (state, name);
--bun:split
CREATE INDEX vms_created ON vms (created_at, id);
