-- What names the hypervisor process beyond its pid: the kernel's boot id and the process's
-- start time. After a crash or a reboot the pid may belong to another process; a restarted
-- manager takes over (or kills) only the process whose identity matches.
ALTER TABLE vms ADD COLUMN pid_identity TEXT NOT NULL DEFAULT '';
