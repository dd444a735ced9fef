ALTER TABLE vms DROP COLUMN seed_sealed;
