#!/bin/sh
# The stress loop of the story this product comes from, as its source describes it: a
# 0.8 s CPU burst with `yes`, 20 × 1 MiB written to /tmp/test.dat and read back with dd,
# the file removed, `ping -c 5` in the background, half a second's pause; again.
# The test image has no ping and the test may reach only its own namespace, so one curl
# making five requests a second apart (--rate 1/s) to the manager URL given as $1 stands
# in for it: one light process, as ping is (five curls would cost more CPU under software
# emulation than the loop itself), started detached (a subshell that exits at once) so
# that `wait` waits for `yes` alone.
# Run inside the guest over SSH; stop it with: pkill -f hearth-story; pkill -x yes
url=$1
while :; do
	yes >/dev/null &
	sleep 0.8
	kill $!
	wait
	dd if=/dev/zero of=/tmp/test.dat bs=1M count=20 2>/dev/null
	dd if=/tmp/test.dat of=/dev/null bs=1M 2>/dev/null
	rm -f /tmp/test.dat
	( curl -s -m 2 --rate 1/s -o /dev/null -o /dev/null -o /dev/null -o /dev/null -o /dev/null \
		"$url" "$url" "$url" "$url" "$url" </dev/null >/dev/null 2>&1 & )
	sleep 0.5
done
