-- Images VMs boot from: built from Debian's packages, imported from files, or flattened
-- from an OCI image, with their files under the data dir's images/<name>/. steps is a JSON
-- array of {name, state, detail} while it is made; files a JSON array of {name, size, sha256}.
CREATE TABLE images (
    name        TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('building', 'ready', 'failed')),
    kernel      TEXT NOT NULL DEFAULT '',
    vmlinux     TEXT NOT NULL DEFAULT '',
    initrd      TEXT NOT NULL DEFAULT '',
    rootfs      TEXT NOT NULL DEFAULT '',
    boot_args   TEXT NOT NULL DEFAULT '',
    arch        TEXT NOT NULL DEFAULT '',
    init_system TEXT NOT NULL DEFAULT '' CHECK (init_system IN ('', 'systemd', 'openrc', 'other')),
    cloud_init  BOOLEAN NOT NULL DEFAULT FALSE,
    files       TEXT NOT NULL DEFAULT '[]',
    source      TEXT NOT NULL CHECK (source IN ('built', 'imported', 'oci')),
    reference   TEXT NOT NULL DEFAULT '',
    steps       TEXT NOT NULL DEFAULT '[]',
    error       TEXT NOT NULL DEFAULT '',
    log         TEXT NOT NULL DEFAULT '',
    created_at  {{.Time}} NOT NULL,
    updated_at  {{.Time}} NOT NULL
);
--bun:split
-- The image a VM was made from ('' for none): its kernel, initrd and root filesystem come
-- from it unless the VM names its own.
ALTER TABLE vms ADD COLUMN image TEXT NOT NULL DEFAULT '';
--bun:split
CREATE INDEX vms_image ON vms (image);
