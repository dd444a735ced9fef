#!/bin/sh
# Builds a bootable image from Debian's packages: a release with cloud-init (NoCloud only),
# the cloud kernel, an initramfs that finds virtio disks, OpenSSH, sudo and curl. Hearth's
# image builder (provision/image) runs it; it is also usable by hand:
#
#   build.sh INIT RELEASE SIZE OUT_DIR [MIRROR]
#     INIT systemd   systemd as init, systemd-networkd applies cloud-init's network
#     INIT openrc    sysvinit + OpenRC, no systemd as init; ifupdown applies it
#     RELEASE        a Debian release (bookworm, trixie)
#     SIZE           the root filesystem's size, as mkfs.ext4 takes it (1G, 2G, 1500M)
#
# Writes OUT_DIR/rootfs.ext4 (label rootfs), vmlinuz and initrd.img. Needs root (or
# mmdebstrap's unshare mode), mmdebstrap and the Debian mirror; no loop device
# (mkfs.ext4 -d). Lines "==> step NAME" say where it is.
set -eu
variant=$1
release=$2
size=$3
out=$4
mirror=${5:-}
common=udev,kmod,cloud-init,linux-image-cloud-amd64,initramfs-tools,zstd,iproute2,openssh-server,sudo,curl,ca-certificates,busybox
case $variant in
systemd)
	# dbus: without it systemd-logind does not run, and nothing handles the ACPI power
	# button (Hearth's graceful stop). No ifupdown here: cloud-init prefers it to
	# networkd when it is installed, and systemd-networkd-wait-online then waits two
	# minutes for links networkd does not manage.
	include=$common,systemd-sysv,dbus
	init_hook='chroot "$1" systemctl enable systemd-networkd'
	;;
openrc)
	# acpi-support-base: acpid turns the ACPI power button (Hearth's graceful stop) into
	# a shutdown; without it a sysvinit guest ignores the button and is killed after the
	# stop timeout.
	include=$common,sysvinit-core,openrc,acpi-support-base,ifupdown
	# cloud-init writes /etc/network/interfaces.d/50-cloud-init in its local stage, but
	# nothing brings the interface up under OpenRC: do it right after, before the
	# network stage needs it.
	init_hook='cat > "$1/etc/init.d/hearth-ifup" <<SCRIPT
#!/sbin/openrc-run
description="Bring up the interfaces cloud-init-local configured"
depend() {
	after cloud-init-local
	before cloud-init
}
start() {
	ebegin "Bringing up network interfaces"
	ifup -a
	eend \$?
}
SCRIPT
chmod 0755 "$1/etc/init.d/hearth-ifup"
chroot "$1" rc-update add hearth-ifup boot
# A login prompt on the serial port (the console Hearth shows), as systemd gives one by
# itself for console=ttyS0.
echo "T0:2345:respawn:/sbin/getty -L 115200 ttyS0 vt100" >> "$1/etc/inittab"'
	;;
*)
	echo "usage: build.sh systemd|openrc RELEASE SIZE OUT_DIR [MIRROR]" >&2
	exit 2
	;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
echo "==> step bootstrap"
mmdebstrap --variant=minbase --include="$include" \
	--customize-hook='printf "virtio_pci\nvirtio_blk\nvirtio_net\n" >> "$1/etc/initramfs-tools/modules"' \
	--customize-hook='chroot "$1" update-initramfs -u -k all' \
	--customize-hook="$init_hook" \
	--customize-hook='printf "datasource_list: [ NoCloud, None ]\n" > "$1/etc/cloud/cloud.cfg.d/90-hearth.cfg"' \
	--customize-hook='rm -rf "$1/usr/share/doc" "$1/usr/share/man" "$1/usr/share/locale" "$1/var/cache/apt" "$1/var/lib/apt/lists"' \
	"$release" "$root" $mirror
echo "==> step kernel"
mkdir -p "$out"
cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp "$root"/boot/initrd.img-* "$out/initrd.img"
rm -rf "$root"/boot/*
echo "==> step filesystem"
mkfs.ext4 -q -F -d "$root" -L rootfs "$out/rootfs.ext4" "$size"
echo "built $variant $release image in $out: $(du -sh "$out/rootfs.ext4" | cut -f1) rootfs"
