package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"hearth/app"
	"hearth/app/console"
	"hearth/internal/testkit/consoletest"
	"hearth/internal/testkit/installtest"
	"hearth/internal/testkit/qemutest"
	"hearth/internal/testkit/testenv"
)

// snapshotGuest is the /init of a guest at 10.77.0.2 that runs the real agent with the
// VM's agent token (%s) and keeps a shell on its serial console for the test to type into.
const snapshotGuest = guestBoot + `$B --install -s /bin
ip link set lo up
ip link set eth0 up
ip addr add 10.77.0.2/24 dev eth0
HEARTH_AGENT_TOKEN=%s /bin/hearth-agent --listen :8080 --config /dev/null --sample-interval 1s &
echo "HEARTH-MARKER: agent started"
while :; do setsid cttyhack sh -i; done
`

// agentHealth asks the guest's agent directly (the test shares the bridge's namespace), on
// a new connection each time: a restored guest knows none made after its snapshot.
func agentHealth(ip string) (map[string]any, error) {
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + ip + ":8080/health")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// shell types cmd into the VM's console and returns what came back up to the end marker,
// which the typed line itself never contains.
func shell(t *testing.T, hub *console.Hub, v *console.Viewer, cmd string) string {
	t.Helper()
	mark := fmt.Sprintf("%d", time.Now().UnixNano())
	hub.Write([]byte(cmd + "; echo END-''" + mark + "\n"))
	return string(consoletest.Expect(t, v, "END-"+mark, 60*time.Second))
}

// TestSnapshotRealGuest is issue 17's acceptance on a real guest with the real agent: pause
// (agent unreachable, badge paused, host CPU ~0), resume (live again), a snapshot between a
// marker written before and one after (in memory and on disk), a restore that brings the
// first back without the second, the agent's uptime continuing from the snapshot's, the
// same guest IP, the collector live within two intervals, the clock stepped, the audit log
// telling it all; deleting the snapshot removes its files.
func TestSnapshotRealGuest(t *testing.T) {
	if testenv.InOwnNetns(t) {
		return
	}
	if lo, err := netlink.LinkByName("lo"); err != nil || netlink.LinkSetUp(lo) != nil {
		t.Fatalf("bring lo up: %v", err)
	}
	qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	images := t.TempDir()
	disk := filepath.Join(images, "blank.img")
	if err := os.WriteFile(disk, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	m, _ := startMain(t, map[string]string{"HEARTH_HYPERVISOR": "qemu", "HEARTH_BRIDGE_CIDR": "10.77.0.1/24",
		"HEARTH_METRICS_INTERVAL": "1s", "HEARTH_IMAGE_DIRS": strings.Join(append(qemutest.ImageDirs(), images), ",")})
	token, err := m.Auth.CreateAPIToken(t.Context(), "snap", cliActor)
	if err != nil {
		t.Fatal(err)
	}
	api := func(method, path, body string) (int, map[string]any) {
		return call(t, m.URL(), token, method, path, body)
	}
	body, _ := json.Marshal(map[string]any{"name": "snapper", "kernel": kernel, "rootfs": disk, "provision": false,
		"boot_args": "console=ttyS0 panic=-1 rdinit=/init", "memory_mib": 256})
	status, vm := api("POST", "/v1/vms", string(body))
	if status != 201 {
		t.Fatalf("create: %d %v", status, vm)
	}
	id := vm["id"].(string)
	// The token an agent install would give the VM: the agent then takes the manager's time.
	agentToken, _ := app.NewToken(app.PrefixAgentToken)
	if err := m.DB.SetAgentToken(t.Context(), id, agentToken); err != nil {
		t.Fatal(err)
	}
	initrd := qemutest.InitramfsWith(t, mods, fmt.Sprintf(snapshotGuest, agentToken), map[string][]byte{"bin/hearth-agent": installtest.Agent(t)})
	patch, _ := json.Marshal(map[string]any{"initrd": initrd})
	if status, out := api("PATCH", "/v1/vms/"+id, string(patch)); status != 200 {
		t.Fatalf("patch: %d %v", status, out)
	}
	if status, out := api("POST", "/v1/vms/"+id+"/guest-ip", `{"guest_ip":"10.77.0.2"}`); status != 200 {
		t.Fatalf("guest ip: %d %v", status, out)
	}
	if status, out := api("POST", "/v1/vms/"+id+"/start", ""); status != 200 {
		t.Fatalf("start: %d %v", status, out)
	}
	t.Cleanup(func() { exec.Command("pkill", "-KILL", "-f", "hearth-"+id).Run() })
	metricsOf := func() map[string]any { _, out := api("GET", "/v1/vms/"+id+"/metrics", ""); return out }
	waitMetrics := func(what string, within time.Duration, ok func(map[string]any) bool) map[string]any {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			out := metricsOf()
			if ok(out) {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s: %v; console:\n%s", what, within, out, m.VMs.ConsoleTail(id, 20))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	live := func(out map[string]any) bool { return out["status"] == "live" && out["source"] == "agent" }
	waitMetrics("live after start", 90*time.Second, live)

	// Pause: the guest stops; its agent does not answer; the badge says paused; the host
	// side sees a process that uses no CPU.
	if status, out := api("POST", "/v1/vms/"+id+"/pause", ""); status != 200 || out["state"] != "paused" {
		t.Fatalf("pause: %d %v", status, out)
	}
	if _, err := agentHealth("10.77.0.2"); err == nil {
		t.Error("the agent of a paused guest answered")
	}
	paused := waitMetrics("paused badge", 5*time.Second, func(out map[string]any) bool { return out["status"] == "paused" })
	time.Sleep(2500 * time.Millisecond) // two host readings while paused
	paused = metricsOf()
	cpu, _ := paused["cpu_usage_percent"].(float64)
	t.Logf("paused: badge %v, source %v, host CPU %.2f %%", paused["status"], paused["source"], cpu)
	if paused["status"] != "paused" || paused["cpu_usage_percent"] == nil || cpu > 5 {
		t.Errorf("while paused: want badge paused and host CPU ~0: %v", paused)
	}
	if status, out := api("POST", "/v1/vms/"+id+"/pause", ""); status != 409 {
		t.Errorf("pausing a paused VM: %d %v", status, out)
	}
	resumedAt := time.Now()
	if status, out := api("POST", "/v1/vms/"+id+"/resume", ""); status != 200 || out["state"] != "running" {
		t.Fatalf("resume: %d %v", status, out)
	}
	waitMetrics("live after resume", 10*time.Second, live)
	t.Logf("resume to live agent numbers: %.1f s", time.Since(resumedAt).Seconds())

	hub, err := m.VMs.Console(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := hub.Join()
	shell(t, hub, v, "\necho one > /m1; echo DISK-''ONE | dd of=/dev/vda bs=512 seek=0 conv=notrunc,fsync 2>/dev/null")

	// The snapshot: 202 with a job, ready soon; the guest runs on.
	took := time.Now()
	status, out := api("POST", "/v1/vms/"+id+"/snapshots", `{"name":"first"}`)
	if status != 202 || out["job"] == nil {
		t.Fatalf("snapshot: %d %v", status, out)
	}
	var snap map[string]any
	for {
		_, snap = api("GET", "/v1/vms/"+id+"/snapshots/first", "")
		if snap["state"] != app.SnapshotTaking {
			break
		}
		if time.Since(took) > 2*time.Minute {
			t.Fatalf("snapshot still taking: %v", snap)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tookSnap := time.Since(took)
	health1, err := agentHealth("10.77.0.2")
	if snap["state"] != app.SnapshotReady || err != nil {
		t.Fatalf("snapshot: %v; agent after it: %v", snap, err)
	}
	size, _ := snap["size_bytes"].(float64)
	t.Logf("snapshot of the 256 MiB guest: %.2f s to ready (guest paused %v ms), %.1f MiB", tookSnap.Seconds(), snap["paused_ms"], size/(1<<20))
	if size < 1<<20 || snap["paused_ms"] == nil {
		t.Errorf("snapshot record: %v", snap)
	}
	if _, st := api("GET", "/v1/vms/"+id, ""); st["state"] != "running" {
		t.Errorf("after a snapshot the VM is %v, not running", st["state"])
	}
	if status, out := api("POST", "/v1/vms/"+id+"/snapshots", `{"name":"first"}`); status != 409 {
		t.Errorf("a second snapshot named first: %d %v", status, out)
	}
	for _, bad := range []string{`{"name":"../x"}`, `{"name":""}`, `{"name":"UPPER"}`, `{"name":"a","kind":"half"}`, `{"nam":"a"}`, `[]`} {
		if status, out := api("POST", "/v1/vms/"+id+"/snapshots", bad); status != 400 {
			t.Errorf("snapshot %s: %d %v", bad, status, out)
		}
	}

	shell(t, hub, v, "echo two > /m2; echo DISK-''TWO | dd of=/dev/vda bs=512 seek=1 conv=notrunc,fsync 2>/dev/null")
	time.Sleep(6 * time.Second) // the world moves on; the snapshot's guest must not have

	restoreAt := time.Now()
	status, out = api("POST", "/v1/vms/"+id+"/snapshots/first/restore", "")
	if status != 200 || out["state"] != "running" {
		t.Fatalf("restore: %d %v", status, out)
	}
	tookRestore := time.Since(restoreAt)
	var after map[string]any
	rounds, err := withinIntervals(m.Metrics, 2, func() bool { after = metricsOf(); return live(after) })
	if err != nil {
		t.Errorf("live agent numbers after the restore: %v: %v", err, after)
	}
	t.Logf("restore of the 256 MiB guest: %.2f s to running, %.2f s to live agent numbers, %d polling rounds after it returned (interval 1 s)",
		tookRestore.Seconds(), time.Since(restoreAt).Seconds(), rounds)
	health2, err := agentHealth("10.77.0.2")
	if err != nil {
		t.Fatal(err)
	}
	u1, u2 := health1["uptime_seconds"].(float64), health2["uptime_seconds"].(float64)
	wall := time.Since(took).Seconds()
	t.Logf("agent uptime: %.1f s at the snapshot, %.1f s after the restore, %.1f s of wall clock later", u1, u2, wall)
	if u2 < u1-1 || u2 > u1+wall-5 {
		t.Errorf("the agent's uptime after the restore (%.1f s) does not continue from the snapshot's (%.1f s)", u2, u1)
	}
	if _, st := api("GET", "/v1/vms/"+id, ""); st["guest_ip"] != "10.77.0.2" {
		t.Errorf("guest IP after the restore: %v", st["guest_ip"])
	}

	rhub, err := m.VMs.Console(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	rv, _ := rhub.Join()
	got := shell(t, rhub, rv, "\necho 3 > /proc/sys/vm/drop_caches; ls /m1 /m2 2>&1; dd if=/dev/vda bs=512 count=2 2>/dev/null | tr -d '\\000'; echo")
	if !strings.Contains(got, "/m1") || !strings.Contains(got, "/m2: No such file") {
		t.Errorf("the guest's memory after the restore: want /m1 and no /m2:\n%s", got)
	}
	if !strings.Contains(got, "DISK-ONE") || strings.Contains(got, "DISK-TWO") {
		t.Errorf("the guest's disk after the restore: want the first marker, not the second:\n%s", got)
	}
	// The clock: stepped by the manager through the agent.
	var clock string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		entries, _ := m.VMs.AuditLog(t.Context(), id, 50)
		for _, e := range entries {
			if e.Action == app.AuditRestore && strings.Contains(e.Detail, "clock") {
				clock = e.Detail
			}
		}
		if clock != "" {
			break
		}
	}
	t.Logf("audit: %s", clock)
	if !strings.Contains(clock, "stepped forward") {
		t.Errorf("the guest clock was not stepped after the restore: %q", clock)
	}
	guestNow := shell(t, rhub, rv, "echo T=$(date +%s)=T")
	if mt := regexp.MustCompile(`T=(\d+)=T`).FindStringSubmatch(guestNow); mt == nil {
		t.Errorf("no guest time in %q", guestNow)
	} else if sec, _ := strconv.ParseInt(mt[1], 10, 64); time.Since(time.Unix(sec, 0)).Abs() > 3*time.Second {
		t.Errorf("guest clock %s is %.0f s off the host's after the restore", time.Unix(sec, 0), time.Since(time.Unix(sec, 0)).Seconds())
	}
	entries, _ := m.VMs.AuditLog(t.Context(), id, 50)
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.Action] = true
	}
	for _, want := range []string{app.AuditVMPause, app.AuditVMResume, app.AuditSnapshot, app.AuditRestore} {
		if !seen[want] {
			t.Errorf("no %s in the audit log", want)
		}
	}

	// Delete: the record and the files go; deleting the VM takes the rest.
	dir := filepath.Join(m.Config.DataDir, "vms", id, "snapshots", "first")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("snapshot dir: %v", err)
	}
	if status, out := api("DELETE", "/v1/vms/"+id+"/snapshots/first", ""); status != 204 {
		t.Fatalf("delete snapshot: %d %v", status, out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the deleted snapshot's files remain: %v", err)
	}
	if status, _ := api("POST", "/v1/vms/"+id+"/snapshots/first/restore", ""); status != 404 {
		t.Errorf("restore of a deleted snapshot: %d", status)
	}
	if status, out := api("POST", "/v1/vms/"+id+"/snapshots", `{"name":"second"}`); status != 202 {
		t.Fatalf("second snapshot: %d %v", status, out)
	}
	for _, sn := range waitSnapshots(t, api, id) {
		if sn["state"] != app.SnapshotReady {
			t.Errorf("second snapshot: %v", sn)
		}
	}
	exec.Command("pkill", "-KILL", "-f", "hearth-"+id).Run()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, st := api("GET", "/v1/vms/"+id, ""); st["state"] != "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed VM is still running")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status, out := api("DELETE", "/v1/vms/"+id, ""); status != 204 {
		t.Fatalf("delete VM: %d %v", status, out)
	}
	if _, err := os.Stat(filepath.Join(m.Config.DataDir, "vms", id)); !os.IsNotExist(err) {
		t.Errorf("the deleted VM's snapshots remain: %v", err)
	}
}

// waitBooted waits for a qemutest guest's boot marker on the VM's console.
func waitBooted(t *testing.T, m *Main, id string) {
	t.Helper()
	for deadline := time.Now().Add(90 * time.Second); !strings.Contains(m.VMs.ConsoleTail(id, 200), "HEARTH-MARKER: booted"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the guest did not boot:\n%s", m.VMs.ConsoleTail(id, 30))
		}
	}
}

// waitSnapshots waits until no snapshot of the VM is being taken and returns the list.
func waitSnapshots(t *testing.T, api func(method, path, body string) (int, map[string]any), id string) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, out := api("GET", "/v1/vms/"+id+"/snapshots", "")
		list, _ := out["snapshots"].([]any)
		var snaps []map[string]any
		taking := false
		for _, x := range list {
			sn := x.(map[string]any)
			snaps = append(snaps, sn)
			taking = taking || sn["state"] == app.SnapshotTaking
		}
		if !taking {
			return snaps
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshots still taking: %v", snaps)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
