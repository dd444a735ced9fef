#!/bin/sh
# Installs hearth-agent from the cloud-init seed drive (label cidata) and starts it under
# whichever init system this guest runs. Written by Hearth; run once by cloud-init's runcmd.
set -eu
log() { echo "hearth-install: $*"; }

mnt=$(mktemp -d /tmp/hearth-seed.XXXXXX)
cleanup() { umount "$mnt" 2>/dev/null || true; rmdir "$mnt" 2>/dev/null || true; }
trap cleanup EXIT

dev=""
if command -v blkid >/dev/null 2>&1; then dev=$(blkid -L cidata 2>/dev/null || true); fi
[ -n "$dev" ] || [ ! -e /dev/disk/by-label/cidata ] || dev=/dev/disk/by-label/cidata
if [ -z "$dev" ]; then
	for d in /dev/sr0 /dev/vd[b-z] /dev/sd[b-z] /dev/xvd[b-z]; do
		[ -b "$d" ] || continue
		if mount -o ro "$d" "$mnt" 2>/dev/null; then
			if [ -f "$mnt/hearth-agent" ]; then dev=$d; break; fi
			umount "$mnt"
		fi
	done
fi
[ -n "$dev" ] || { log "no seed drive labelled cidata found"; exit 1; }
mountpoint -q "$mnt" 2>/dev/null || grep -q " $mnt " /proc/mounts || mount -o ro "$dev" "$mnt"
[ -f "$mnt/hearth-agent" ] || { log "the seed drive $dev has no hearth-agent"; exit 1; }

install -m 0755 "$mnt/hearth-agent" /usr/local/bin/hearth-agent.new
mv -f /usr/local/bin/hearth-agent.new /usr/local/bin/hearth-agent
log "installed /usr/local/bin/hearth-agent from $dev"

lib=/usr/local/lib/hearth
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	install -m 0644 "$lib/hearth-agent.service" /etc/systemd/system/hearth-agent.service
	systemctl daemon-reload
	systemctl enable hearth-agent.service
	systemctl restart hearth-agent.service
	log "started hearth-agent with systemd"
elif command -v openrc-run >/dev/null 2>&1 || [ -x /sbin/openrc-run ]; then
	install -m 0755 "$lib/hearth-agent.openrc" /etc/init.d/hearth-agent
	rc-update add hearth-agent default
	rc-service hearth-agent restart || rc-service hearth-agent start
	log "started hearth-agent with OpenRC"
else
	# No init system we know: start it detached so the VM still reports.
	nohup /usr/local/bin/hearth-agent --config /etc/hearth-agent.conf >>/var/log/hearth-agent.log 2>&1 &
	log "no systemd or OpenRC found; started hearth-agent in the background"
fi
