#!/bin/sh
# The stress script of the seed document's story, run inside the guest over SSH: keep half
# of the vCPUs busy (rounded up) and write to the root disk in a loop, so that the CPU%
# Hearth shows sits between 40 and 90 % and the disk write rate is well above zero.
# The seed document itself is not in this repository; this reconstructs its intent.
# Stop it with: pkill -f hearth-stress
n=$(( ($(nproc) + 1) / 2 ))
i=0
while [ "$i" -lt "$n" ]; do
	sh -c 'while :; do :; done' hearth-stress-cpu &
	i=$((i + 1))
done
sh -c 'while :; do dd if=/dev/zero of=/var/tmp/hearth-stress.dat bs=1M count=16 conv=fsync 2>/dev/null; sleep 1; done' hearth-stress-disk &
wait
