-- The manager presents agent_token to the guest agent, so it is kept as is (unlike the
-- registration token, which the guest presents and of which only a hash is kept).
ALTER TABLE vms ADD COLUMN agent_token TEXT NOT NULL DEFAULT '';
--bun:split
-- The guest's SSH host key (authorized_keys form) that the installer pins: injected through
-- the seed, or recorded on first use.
ALTER TABLE vms ADD COLUMN host_key TEXT NOT NULL DEFAULT '';
--bun:split
ALTER TABLE vms ADD COLUMN host_key_source TEXT NOT NULL DEFAULT '' CHECK (host_key_source IN ('', 'injected', 'tofu'));
--bun:split
ALTER TABLE vms ADD COLUMN provisioned BOOLEAN NOT NULL DEFAULT FALSE;
