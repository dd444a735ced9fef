ALTER TABLE vms DROP COLUMN pid_identity;
