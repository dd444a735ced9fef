-- A static IPv4 address (CIDR form) allocated from the bridge network and handed to the
-- guest through the seed's network-config; '' when the guest uses DHCP or has none.
ALTER TABLE vms ADD COLUMN address TEXT NOT NULL DEFAULT '';
--bun:split
CREATE UNIQUE INDEX vms_address ON vms (address) WHERE address <> '';
