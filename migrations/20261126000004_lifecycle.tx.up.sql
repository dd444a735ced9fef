-- Which driver runs the VM ('' = the host's default), the hypervisor process while it
-- runs (for re-attaching after a manager restart), and why it failed, if it did.
ALTER TABLE vms ADD COLUMN hypervisor TEXT NOT NULL DEFAULT '' CHECK (hypervisor IN ('', 'firecracker', 'qemu'));
--bun:split
ALTER TABLE vms ADD COLUMN pid INTEGER NOT NULL DEFAULT 0;
--bun:split
ALTER TABLE vms ADD COLUMN running_driver TEXT NOT NULL DEFAULT '';
--bun:split
ALTER TABLE vms ADD COLUMN state_reason TEXT NOT NULL DEFAULT '';
