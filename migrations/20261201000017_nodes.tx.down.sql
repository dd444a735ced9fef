DROP INDEX vms_node_state;
--bun:split
ALTER TABLE vms DROP COLUMN node;
--bun:split
DROP TABLE nodes;
