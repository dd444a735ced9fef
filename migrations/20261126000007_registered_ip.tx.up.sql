-- The address the guest registered itself (first-boot callback or agent), kept beneath an
-- operator's manual override: guest registrations no longer replace an override, and
-- clearing the override falls back to what the guest said last.
ALTER TABLE vms ADD COLUMN registered_ip TEXT NOT NULL DEFAULT '';
--bun:split
ALTER TABLE vms ADD COLUMN registered_ip_source TEXT NOT NULL DEFAULT '';
--bun:split
ALTER TABLE vms ADD COLUMN registered_ip_at {{.Time}};
--bun:split
UPDATE vms SET registered_ip = guest_ip, registered_ip_source = guest_ip_source, registered_ip_at = guest_ip_updated_at
WHERE guest_ip_source IN ('callback', 'agent');
