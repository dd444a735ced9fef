-- A VM's seed is rendered when it starts, from its record and these: its registration
-- token, SSH host key and instance id, sealed with the data dir's seal key (never in
-- plaintext here). '' for VMs whose seed was written whole at create time.
ALTER TABLE vms ADD COLUMN seed_sealed TEXT NOT NULL DEFAULT '';
