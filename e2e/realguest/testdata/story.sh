#!/bin/sh
# The stress loop of the story this product comes from, as its source describes it: a
# 0.8 s CPU burst with `yes`, 20 × 1 MiB written to /tmp/test.dat and read back with dd,
# the file removed, `ping -c 5` in the background, half a second's pause; again.
# The test image has no ping and the test may reach only its own namespace, so five
# requests a second apart to the manager URL given as $1 stand in for it, started
# detached (a subshell that exits at once) so that `wait` waits for `yes` alone.
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
	( (for i in 1 2 3 4 5; do curl -s -o /dev/null -m 1 "$url"; sleep 1; done) </dev/null >/dev/null 2>&1 & )
	sleep 0.5
done
