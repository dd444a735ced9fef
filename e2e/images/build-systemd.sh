#!/bin/sh
# Builds the systemd variant of the real-guest test image: Debian bookworm with cloud-init
# (NoCloud only), systemd-networkd, the cloud kernel and an initramfs that can find virtio
# disks. Usage: build-systemd.sh OUT_DIR   (writes OUT_DIR/rootfs.ext4, vmlinuz, initrd.img)
set -eu
out=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mmdebstrap --variant=minbase \
	--include=systemd-sysv,udev,kmod,cloud-init,linux-image-cloud-amd64,initramfs-tools,zstd,iproute2,ifupdown,openssh-server,sudo,curl,ca-certificates,busybox \
	--customize-hook='echo "virtio_pci
virtio_blk
virtio_net" >> "$1/etc/initramfs-tools/modules"' \
	--customize-hook='chroot "$1" update-initramfs -u -k all' \
	--customize-hook='chroot "$1" systemctl enable systemd-networkd' \
	--customize-hook='printf "datasource_list: [ NoCloud, None ]\n" > "$1/etc/cloud/cloud.cfg.d/90-hearth.cfg"' \
	--customize-hook='rm -rf "$1/usr/share/doc" "$1/usr/share/man" "$1/usr/share/locale" "$1/var/cache/apt" "$1/var/lib/apt/lists"' \
	bookworm "$root"
mkdir -p "$out"
cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp "$root"/boot/initrd.img-* "$out/initrd.img"
rm -rf "$root"/boot/*
mkfs.ext4 -q -F -d "$root" -L rootfs "$out/rootfs.ext4" 1G
echo "built $out: $(du -sh "$out/rootfs.ext4" | cut -f1) rootfs"
