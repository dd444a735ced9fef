package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"hearth/app/metrics"
	"hearth/internal/testkit/installtest"
	"hearth/internal/testkit/qemutest"
	"hearth/internal/testkit/testenv"
)

// guestBoot begins the /init of the tests' busybox guests: the pseudo filesystems, and the
// kernel's modules in the order they need.
const guestBoot = `#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for m in $($B cat /modules.order); do $B insmod /modules/$m || echo "HEARTH-INSMOD-FAILED $m"; done
`

// guestWithAgent is the /init of a guest that brings eth0 up at 10.77.0.2, runs the real
// hearth-agent for a while, then stops it (as an operator or a crash would) and says so.
const guestWithAgent = guestBoot + `$B ip link set lo up
$B ip link set eth0 up
$B ip addr add 10.77.0.2/24 dev eth0
/bin/hearth-agent --listen :8080 --config /dev/null --sample-interval 1s &
agent=$!
echo "HEARTH-MARKER: agent started"
$B sleep 25
kill $agent
echo "HEARTH-AGENT-STOPPED"
while :; do $B sleep 60; done
`

// TestAgentLiveThenHostFallback is the acceptance on a real guest: the whole
// manager runs in a network namespace of its own with a bridge; a QEMU guest carries the
// real agent on its NIC; the API reports live agent numbers, and once the agent stops the
// badge turns to host fallback within two polling intervals.
func TestAgentLiveThenHostFallback(t *testing.T) {
	if testenv.InOwnNetns(t) {
		return
	}
	// A new network namespace starts with its loopback down; the manager listens there.
	if lo, err := netlink.LinkByName("lo"); err != nil || netlink.LinkSetUp(lo) != nil {
		t.Fatalf("bring lo up: %v", err)
	}
	qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	initrd := qemutest.InitramfsWith(t, mods, guestWithAgent, map[string][]byte{"bin/hearth-agent": installtest.Agent(t)})
	m, _ := startMain(t, map[string]string{"HEARTH_HYPERVISOR": "qemu", "HEARTH_BRIDGE_CIDR": "10.77.0.1/24",
		"HEARTH_METRICS_INTERVAL": "1s", "HEARTH_ADMIN_PASSWORD": "e2e-password"})
	token, err := m.Auth.CreateAPIToken(t.Context(), "e2e", cliActor)
	if err != nil {
		t.Fatal(err)
	}
	api := func(method, path, body string) (int, map[string]any) {
		return call(t, m.URL(), token, method, path, body)
	}
	body, _ := json.Marshal(map[string]any{"name": "agent-guest", "kernel": kernel, "initrd": initrd, "provision": false,
		"boot_args": "console=ttyS0 panic=-1 rdinit=/init", "memory_mib": 256})
	status, vm := api("POST", "/v1/vms", string(body))
	if status != 201 {
		t.Fatalf("create: %d %v", status, vm)
	}
	id := vm["id"].(string)
	if status, out := api("POST", "/v1/vms/"+id+"/guest-ip", `{"guest_ip":"10.77.0.2"}`); status != 200 {
		t.Fatalf("guest ip: %d %v", status, out)
	}
	start := time.Now()
	if status, out := api("POST", "/v1/vms/"+id+"/start", ""); status != 200 {
		t.Fatalf("start: %d %v", status, out)
	}
	// Hypervisors outlive the manager on purpose (it re-attaches after a restart), and this
	// guest ignores the power button: kill it, or it would run on after the test.
	t.Cleanup(func() { exec.Command("pkill", "-KILL", "-f", "hearth-"+id).Run() })
	var live map[string]any
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, live = api("GET", "/v1/vms/"+id+"/metrics", "")
		if live["status"] == "live" && live["source"] == "agent" && live["memory_usage_percent"] != nil && live["cpu_usage_percent"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never live: %v; console:\n%s", live, m.VMs.ConsoleTail(id, 20))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("start to live agent numbers: %.1f s (cpu %.1f %%, memory %.1f %%)", time.Since(start).Seconds(),
		live["cpu_usage_percent"], live["memory_usage_percent"])
	// Wait for the guest to stop its agent, then measure how long the badge takes to flip.
	for !strings.Contains(m.VMs.ConsoleTail(id, 10), "HEARTH-AGENT-STOPPED") {
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("the guest never stopped its agent:\n%s", m.VMs.ConsoleTail(id, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopped := time.Now()
	var out map[string]any
	rounds, err := withinIntervals(m.Metrics, 2, func() bool {
		_, out = api("GET", "/v1/vms/"+id+"/metrics", "")
		return out["status"] == "host"
	})
	if err != nil {
		t.Fatalf("the badge after the agent stopped: %v: %v", err, out)
	}
	t.Logf("agent stopped to host-fallback badge: %.1f s, %d rounds (interval 1 s); host CPU %v %%, why: %v",
		time.Since(stopped).Seconds(), rounds, out["cpu_usage_percent"], out["why"])
	if out["host_rss_bytes"] == nil {
		t.Errorf("host fallback without host RSS: %v", out)
	}
}

// withinIntervals waits until ok holds, and fails once the collector has finished n whole
// rounds since the call without it holding (the round already under way at the call may
// have polled before the event, so it does not count). It counts rounds, not seconds:
// "within two intervals" must hold on a loaded CI machine too, where a round of a
// TCG-emulated guest can take longer than its interval. It returns the rounds it took.
func withinIntervals(c *metrics.Collector, n uint64, ok func() bool) (uint64, error) {
	start := c.Rounds()
	deadline := time.Now().Add(2 * time.Minute) // a collector that stopped polling
	for {
		// ok looks before the count: when the count says a round too many, the last round
		// that counts had already finished when ok looked.
		held := ok()
		done := c.Rounds() - start
		switch {
		case held:
			return done, nil
		case done > n+1:
			return done, fmt.Errorf("not after %d whole polling rounds", n)
		case time.Now().After(deadline):
			return done, fmt.Errorf("not in 2 minutes (%d rounds)", done)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
