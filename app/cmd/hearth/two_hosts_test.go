package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/vishvananda/netlink"

	"hearth/app"
	"hearth/internal/testkit/browsertest"
	"hearth/internal/testkit/installtest"
	"hearth/internal/testkit/qemutest"
	"hearth/internal/testkit/storetest"
	"hearth/internal/testkit/testenv"
)

// twoHostGuest is the /init of a tiny guest on a node's bridge: its address (%[2]s, with
// the prefix), the real agent, the first-boot callback as the seed makes it (the guest IP
// %[3]s posted to its node's guest URL %[5]s with the VM's registration token %[4]s, until
// it is taken), a shell on the serial console, and a power button that powers it off.
const twoHostGuest = guestBoot + `$B --install -s /bin
hostname %[1]s
ip link set lo up
ip link set eth0 up
ip addr add %[2]s dev eth0
pb=""
for e in /sys/class/input/event*; do
	[ "$(cat $e/device/name 2>/dev/null)" = "Power Button" ] && pb=/dev/input/${e##*/}
done
if [ -n "$pb" ]; then ( dd if="$pb" of=/dev/null bs=24 count=1 2>/dev/null; echo "HEARTH-POWEROFF"; poweroff -f ) & fi
/bin/hearth-agent --listen :8080 --config /dev/null --sample-interval 1s &
until wget -q -O /dev/null --header "Authorization: Bearer %[4]s" --header "Content-Type: application/json" \
	--post-data '{"guest_ip":"%[3]s"}' %[5]s/v1/vms/%[6]s/guest-ip; do sleep 1; done
echo "HEARTH-MARKER: registered"
while :; do setsid cttyhack sh -i; done
`

// TestTwoHosts is issue 18's acceptance: two hosts as two network namespaces, each with
// its own bridge and tiny QEMU guests, joined by a veth pair on which the nodes and one
// real PostgreSQL (on host A) talk. Node alpha runs on A (in this process), node beta on B
// (the real `hearth serve` in a process of its own, so it can be killed). A VM asked of
// alpha without a node is placed on beta (alpha's own guest holds more memory), started
// from alpha (queued for beta), registers with beta, and its live agent numbers appear on
// alpha's API and VM page (Chromium); alpha's console reaches beta's guest; beta's node
// endpoints refuse anyone without the node credential; beta killed → alpha shows it down
// and its VMs "node down" within three heartbeats, and nothing is restarted anywhere; a
// stop asked of alpha meanwhile waits; beta restarted → its VMs are re-attached (the same
// QEMU processes) and live again, and the queued stop is carried out.
func TestTwoHosts(t *testing.T) {
	if testenv.InOwnNetns(t) {
		return
	}
	if lo, err := netlink.LinkByName("lo"); err != nil || netlink.LinkSetUp(lo) != nil {
		t.Fatalf("bring lo up: %v", err)
	}
	qemutest.QEMU(t)
	needAgent(t)
	kernel, mods := qemutest.Kernel(t)
	agentBin := installtest.Agent(t)

	// Host B, and the link: A is 10.200.0.1, B 10.200.0.2. PostgreSQL runs on A and
	// trusts the link.
	hostB := testenv.NewNetns(t)
	testenv.Veth(t, "lan", hostB, "10.200.0.1/24", "10.200.0.2/24")
	dsn := storetest.PostgresServer(t, "10.200.0.1", "10.200.0.0/24")
	secret := filepath.Join(t.TempDir(), "cluster.secret")
	if err := os.WriteFile(secret, []byte("two-hosts-0123456789abcdef0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const heartbeat = time.Second
	common := map[string]string{"HEARTH_DATABASE_URL": dsn, "HEARTH_CLUSTER_SECRET_FILE": secret, "HEARTH_HYPERVISOR": "qemu",
		"HEARTH_NODE_HEARTBEAT": heartbeat.String(), "HEARTH_METRICS_INTERVAL": "1s", "HEARTH_ADMIN_PASSWORD": "two-hosts-pw",
		"HEARTH_BRIDGE_CIDR": "", // each node chooses its own bridge network, one no other node has
		"HEARTH_IMAGE_DIRS":  strings.Join(qemutest.ImageDirs(), ",")}
	alphaEnv := map[string]string{"HEARTH_NODE": "alpha", "HEARTH_LISTEN": "10.200.0.1:0"}
	for k, v := range common {
		alphaEnv[k] = v
	}
	alpha, _ := startMain(t, alphaEnv)

	// Beta: `hearth serve` on B, on a port of B's own namespace; killed with SIGKILL.
	betaDir, betaLog := t.TempDir(), filepath.Join(t.TempDir(), "beta.log")
	const betaURL = "http://10.200.0.2:18080"
	var beta *exec.Cmd
	startBeta := func() {
		t.Helper()
		beta = hostB.Command(os.Args[0])
		beta.Env = append(os.Environ(), asHearthEnv+"=serve", "HEARTH_NODE=beta", "HEARTH_LISTEN=10.200.0.2:18080",
			"HEARTH_DATA_DIR="+betaDir, "HEARTH_LOG_LEVEL=info")
		for k, v := range common {
			beta.Env = append(beta.Env, k+"="+v)
		}
		log, err := os.OpenFile(betaLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		beta.Stdout, beta.Stderr = log, log
		beta.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := beta.Start(); err != nil {
			t.Fatalf("start beta: %v", err)
		}
		log.Close()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if resp, err := http.Get(betaURL + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(betaLog)
				t.Fatalf("beta never served on %s:\n%s", betaURL, b)
			}
		}
	}
	killBeta := func() {
		beta.Process.Signal(syscall.SIGKILL)
		beta.Wait()
	}
	t.Cleanup(func() {
		if beta.ProcessState == nil {
			killBeta()
		}
		if t.Failed() {
			b, _ := os.ReadFile(betaLog)
			t.Logf("beta's log:\n%s", b)
		}
	})
	startBeta()

	token, err := alpha.Auth.CreateAPIToken(t.Context(), "ops", cliActor)
	if err != nil {
		t.Fatal(err)
	}
	a := func(method, path, body string) (int, map[string]any) {
		return call(t, alpha.URL(), token, method, path, body)
	}

	// Two nodes, up, each with its own bridge network.
	nets := map[string]netip.Prefix{}
	_, nodes := a("GET", "/v1/nodes", "")
	list, _ := nodes["nodes"].([]any)
	for _, n := range list {
		n := n.(map[string]any)
		p, err := netip.ParsePrefix(fmt.Sprint(n["network"]))
		if n["state"] != "up" || err != nil {
			t.Fatalf("node %v: %v", n["name"], n)
		}
		nets[n["name"].(string)] = p.Masked()
	}
	if len(nets) != 2 || nets["alpha"] == nets["beta"] || nets["alpha"].Overlaps(nets["beta"]) {
		t.Fatalf("the nodes' networks: %v (%v)", nets, nodes)
	}
	t.Logf("nodes up; bridge networks alpha %s, beta %s", nets["alpha"], nets["beta"])

	// A VM: made through alpha, its guest built with its token and address, started.
	type guest struct{ id, name, node, ip string }
	var ids []string
	t.Cleanup(func() {
		for _, id := range ids {
			exec.Command("pkill", "-KILL", "-f", "hearth-"+id).Run()
		}
	})
	makeVM := func(name, node string, memory int, image, wantNode string) guest {
		t.Helper()
		spec := map[string]any{"name": name, "provision": false, "memory_mib": memory, "boot_args": "console=ttyS0 panic=-1 rdinit=/init"}
		if image != "" {
			spec["image"] = image
		} else {
			spec["kernel"] = kernel
		}
		if node != "" {
			spec["node"] = node
		}
		body, _ := json.Marshal(spec)
		status, vm := a("POST", "/v1/vms", string(body))
		if status != 201 || vm["node"] != wantNode {
			t.Fatalf("create %s: %d %v (want it on %s)", name, status, vm, wantNode)
		}
		g := guest{id: vm["id"].(string), name: name, node: wantNode}
		ids = append(ids, g.id)
		net := nets[wantNode]
		ip := net.Addr().Next()
		for i := 0; i < 49+len(ids); i++ { // .50, .51, …: apart from anything a node allocates
			ip = ip.Next()
		}
		g.ip = ip.String()
		gw := net.Addr().Next() // the node's bridge address, where its guest endpoints are
		port := "18080"
		if wantNode == "alpha" {
			port = alpha.URL()[strings.LastIndex(alpha.URL(), ":")+1:]
		}
		init := fmt.Sprintf(twoHostGuest, name, netip.PrefixFrom(ip, net.Bits()), g.ip, vm["registration_token"],
			"http://"+gw.String()+":"+port, g.id)
		initrd := qemutest.InitramfsWith(t, mods, init, map[string][]byte{"bin/hearth-agent": agentBin})
		patch, _ := json.Marshal(map[string]any{"initrd": initrd})
		if status, out := a("PATCH", "/v1/vms/"+g.id, string(patch)); status != 200 {
			t.Fatalf("patch %s: %d %v", name, status, out)
		}
		return g
	}
	waitAction := func(what string, out map[string]any) (map[string]any, time.Duration) {
		t.Helper()
		return followAction(t, a, what, "beta", out)
	}
	until := func(what string, within time.Duration, ok func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !ok() {
			if time.Since(start) > within {
				t.Fatalf("%s: not within %s", what, within)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(start)
	}
	metrics := func(id string) map[string]any { _, m := a("GET", "/v1/vms/"+id+"/metrics", ""); return m }
	vmOn := func(id string) map[string]any { _, v := a("GET", "/v1/vms/"+id, ""); return v }
	live := func(id string) bool {
		m := metrics(id)
		return m["status"] == "live" && m["source"] == "agent" && m["cpu_usage_percent"] != nil && m["memory_usage_percent"] != nil
	}

	// An image imported on beta (`hearth image import --node beta`, run on host B's data
	// dir): beta's alone.
	rootfs := filepath.Join(t.TempDir(), "root.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "rootfs", rootfs, "8M").CombinedOutput(); err != nil {
		testenv.Missing(t, "mkfs.ext4 (e2fsprogs)", string(out))
	}
	cliEnv := map[string]string{"HEARTH_DATA_DIR": betaDir}
	for k, v := range common {
		cliEnv[k] = v
	}
	var out strings.Builder
	if err := run(t.Context(), []string{"image", "import", "tiny", "--kernel", kernel, "--rootfs", rootfs, "--node", "beta"},
		testEnv(cliEnv), noSetenv, nil, &out, &out); err != nil || !strings.Contains(out.String(), "image tiny is ready") {
		t.Fatalf("image import on beta: %v\n%s", err, out.String())
	}
	if _, err := os.Stat(filepath.Join(betaDir, "images", "tiny")); err != nil {
		t.Fatalf("the image's files are not in beta's data dir: %v", err)
	}
	if status, im := a("GET", "/v1/images/tiny?node=beta", ""); status != 200 || im["node"] != "beta" || im["state"] != "ready" {
		t.Errorf("beta's image through alpha: %d %v", status, im)
	}
	if status, out := a("POST", "/v1/vms", `{"name":"no-tiny-here","provision":false,"image":"tiny","node":"alpha"}`); status != 400 ||
		!strings.Contains(fmt.Sprint(out), `node alpha has no image named "tiny"; it is on node beta`) {
		t.Errorf("a VM on alpha from beta's image: %d %v", status, out)
	}

	// Placement. Alpha's own guest holds 128 MiB of alpha: the next VM asked of alpha goes
	// to beta, which holds none. Then both hold 128 MiB (a tie goes to alpha, by name),
	// but the VM is made from tiny, which only beta has.
	a1 := makeVM("a1", "alpha", 128, "", "alpha")
	if status, out := a("POST", "/v1/vms/"+a1.id+"/start", ""); status != 200 {
		t.Fatalf("start a1 on alpha: %d %v", status, out)
	}
	b1 := makeVM("b1", "", 128, "", "beta")
	tookB1 := doOn(t, a, "/v1/vms/"+b1.id+"/start", "beta")
	started := time.Now()
	if status, out := a("POST", "/v1/vms", `{"name":"tie","provision":false,"memory_mib":128}`); status != 201 || out["node"] != "alpha" {
		t.Errorf("placement of a VM with alpha and beta holding as much: %d %v", status, out)
	} else {
		a("DELETE", "/v1/vms/"+out["id"].(string), "")
	}
	b2 := makeVM("b2", "", 128, "tiny", "beta")
	t.Logf("placement: asked of alpha without a node, b1 went to beta (alpha runs 128 MiB, beta none); with both at 128 MiB a VM went to alpha (the tie, by name), b2 from image tiny to beta (the only node with it)")

	tookB2 := doOn(t, a, "/v1/vms/"+b2.id+"/start", "beta")
	t.Logf("start asked of alpha, carried out by beta (queued, heard, hypervisor running): b1 %.0f ms, b2 %.0f ms",
		tookB1.Seconds()*1000, tookB2.Seconds()*1000)
	took := until("b1 registers its guest IP with beta", 120*time.Second, func() bool {
		v := vmOn(b1.id)
		return v["guest_ip"] == b1.ip && v["guest_ip_source"] == "callback"
	})
	t.Logf("b1 registered %s with beta (callback) %.1f s after its start", b1.ip, took.Seconds())
	took = until("b1's live agent numbers on alpha's API", 60*time.Second, func() bool { return live(b1.id) })
	m := metrics(b1.id)
	t.Logf("b1 live on alpha's API %.1f s after its start: cpu %.1f %%, memory %.1f %%", time.Since(started).Seconds(),
		m["cpu_usage_percent"], m["memory_usage_percent"])
	until("a1 live on alpha", 120*time.Second, func() bool { return live(a1.id) })
	until("b2 live", 60*time.Second, func() bool { return live(b2.id) })
	if v := vmOn(a1.id); v["node"] != "alpha" || v["guest_ip"] != a1.ip {
		t.Errorf("a1: %v", v)
	}

	// Alpha's VM page in Chromium: b1's live agent figures.
	ctx := browsertest.New(t, 3*time.Minute)
	pg := browsertest.Page{T: t, Ctx: ctx, Name: "two-hosts"}
	pg.Step("sign in on alpha",
		chromedp.Navigate(alpha.URL()+"/vms/"+b1.id),
		chromedp.WaitVisible(`[data-testid=sign-in]`),
		chromedp.SendKeys(`#f-name`, "admin"),
		chromedp.SendKeys(`#f-password`, "two-hosts-pw"),
		chromedp.Click(`[data-testid=sign-in]`),
	)
	pg.WaitText("b1's page on alpha says live · agent", `[data-testid=metrics-badge]`, "live · agent", 30*time.Second)
	pg.WaitFor("b1's CPU figure on alpha's page", 10*time.Second, func() (bool, error) {
		return strings.HasSuffix(pg.Eval("cpu", `document.querySelector('[data-stat="CPU"] dd')?.innerText.trim() || ''`), "%"), nil
	})
	if s := pg.Text("the page names the node", `[data-testid=vm-node]`); !strings.Contains(s, "beta") {
		t.Errorf("b1's page on alpha says node %q", s)
	}

	// Alpha's New VM form offers beta's image, saying where it is, and the nodes.
	pg.Step("the New VM form on alpha", chromedp.Navigate(alpha.URL()+"/vms/new"), chromedp.WaitVisible(`[data-testid=vm-image]`))
	if opts := pg.Eval("image options", `[...document.querySelectorAll("[data-testid=vm-image] option")].map(o => o.innerText).join("|")`); !strings.Contains(opts, "tiny (other, no cloud-init; on beta)") {
		t.Errorf("alpha's form offers the images %q", opts)
	}
	if opts := pg.Eval("node options", `[...document.querySelectorAll("[data-testid=vm-node-select] option")].map(o => o.value).join(" ")`); !strings.Contains(opts, "alpha") || !strings.Contains(opts, "beta") {
		t.Errorf("alpha's form offers the nodes %q", opts)
	}
	pg.Step("back to b1's page", chromedp.Navigate(alpha.URL()+"/vms/"+b1.id), chromedp.WaitVisible(`[data-testid=metrics-badge]`))

	// The console through alpha: the shell that answers is b1's, on beta's bridge.
	viewer, resp, err := dialConsole(t, "ws"+strings.TrimPrefix(alpha.URL(), "http")+"/v1/vms/"+b1.id+"/console",
		http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatalf("console of b1 through alpha: %v (%v)", err, resp)
	}
	viewer.until("HEARTH-MARKER: registered", 30*time.Second)
	viewer.typeLine(`echo ON-$(hostname)-''$(ip -4 -o addr show eth0 | grep -o 'inet [0-9.]*')`)
	viewer.until("ON-b1-inet "+b1.ip, 30*time.Second)
	viewer.c.CloseNow()
	t.Logf("alpha's console reached b1 on beta (hostname b1, %s)", b1.ip)

	// A quick action across nodes (pause, resume: one QMP command each on beta): the time
	// from alpha's answer to beta's done is the queue's, LISTEN/NOTIFY's and beta's.
	var quick []string
	for _, act := range []string{"pause", "resume"} {
		took := doOn(t, a, "/v1/vms/"+b1.id+"/"+act, "beta")
		quick = append(quick, fmt.Sprintf("%s %.0f ms", act, took.Seconds()*1000))
		if act == "pause" {
			until("b1 paused on alpha's API", 10*time.Second, func() bool { return metrics(b1.id)["status"] == "paused" })
		}
	}
	until("b1 live after its resume", 30*time.Second, func() bool { return live(b1.id) })
	t.Logf("asked of alpha, done by beta: %s", strings.Join(quick, ", "))

	// Guest-IP rules are beta's, for beta's VM: an override asked of alpha goes to beta,
	// which refuses alpha's address (another manager) and one outside its guest networks.
	for ip, want := range map[string]string{"10.200.0.1": "is the address of node alpha", "10.200.0.2": "is an address of this host",
		"192.0.2.1": "outside the guest networks"} {
		if status, out := a("POST", "/v1/vms/"+b1.id+"/guest-ip", `{"guest_ip":"`+ip+`"}`); status != 400 || !strings.Contains(fmt.Sprint(out), want) {
			t.Errorf("override b1's guest IP with %s through alpha: %d %v (want %q)", ip, status, out, want)
		}
	}
	if v := vmOn(b1.id); v["guest_ip"] != b1.ip {
		t.Errorf("b1's guest IP after refused overrides: %v", v["guest_ip"])
	}

	// Beta's node endpoints, from host A: the node credential only.
	nodeEndpointsRefuse(t, betaURL, b1.id, token)

	// Beta killed: its guests run on (their QEMU processes are their own).
	qemuPid := func(id string) string {
		out, _ := exec.Command("pgrep", "-f", "hearth-"+id).Output()
		return strings.TrimSpace(string(out))
	}
	pids := map[string]string{b1.id: qemuPid(b1.id), b2.id: qemuPid(b2.id), a1.id: qemuPid(a1.id)}
	for id, p := range pids {
		if p == "" || strings.Contains(p, "\n") {
			t.Fatalf("VM %s: QEMU processes %q", id, p)
		}
	}
	killBeta()
	killed := time.Now()
	until("alpha shows beta's VMs as node down", 10*time.Second, func() bool { return vmOn(b1.id)["node_state"] == "down" })
	down := time.Since(killed)
	t.Logf("beta killed → alpha shows b1 node down after %.1f s (heartbeat %s; down after 3 missed)", down.Seconds(), heartbeat)
	if down > 3*heartbeat+time.Second {
		t.Errorf("node down took %.1f s; three heartbeats are %s", down.Seconds(), 3*heartbeat)
	}
	_, nodes = a("GET", "/v1/nodes", "")
	for _, n := range nodes["nodes"].([]any) {
		n := n.(map[string]any)
		if want := map[string]string{"alpha": "up", "beta": "down"}[n["name"].(string)]; n["state"] != want {
			t.Errorf("node %v is %v; want %s", n["name"], n["state"], want)
		}
	}
	pg.WaitFor("b1's page on alpha says its node is down", 10*time.Second, func() (bool, error) {
		return pg.Eval("node down note", `document.querySelector('[data-testid=node-down-note]') ? "yes" : ""`) == "yes", nil
	})
	// What must reach beta now is refused with why, rather than done by alpha or hung.
	for _, r := range []struct{ method, path, body string }{
		{"PATCH", "/v1/vms/" + b1.id, `{"name":"renamed-while-down"}`},
		{"POST", "/v1/vms/" + b1.id + "/snapshots", `{"name":"while-down"}`},
		{"POST", "/v1/vms/" + b1.id + "/guest-ip", `{"guest_ip":"10.77.1.99"}`},
	} {
		if status, out := a(r.method, r.path, r.body); status != 503 || !strings.Contains(fmt.Sprint(out), "node beta is down") {
			t.Errorf("%s %s while beta is down: %d %v", r.method, r.path, status, out)
		}
	}
	if v := vmOn(b1.id); v["name"] != "b1" || v["guest_ip"] != b1.ip {
		t.Errorf("b1 changed while beta was down: %v", v)
	}
	// A stop of b2 asked meanwhile waits for beta.
	status, stopOut := a("POST", "/v1/vms/"+b2.id+"/stop", "")
	if status != 202 {
		t.Fatalf("stop b2 from alpha while beta is down: %d %v", status, stopOut)
	}
	time.Sleep(3 * heartbeat)
	for _, g := range []guest{b1, b2} {
		v := vmOn(g.id)
		if v["state"] != "running" || v["node"] != "beta" || v["node_state"] != "down" {
			t.Errorf("%s while beta is down: %v", g.name, v)
		}
		if p := qemuPid(g.id); p != pids[g.id] {
			t.Errorf("%s's QEMU while beta is down: %q, was %q (nothing may restart it)", g.name, p, pids[g.id])
		}
	}
	if v := vmOn(a1.id); v["state"] != "running" || !live(a1.id) {
		t.Errorf("a1 on alpha while beta is down: %v", v)
	}

	// Beta back: the queued stop is carried out, b1 is re-attached and live again.
	restarted := time.Now()
	startBeta()
	serving := time.Since(restarted)
	if act, _ := waitAction("the stop of b2 queued while beta was down", stopOut); act["state"] != app.ActionDone {
		t.Errorf("stop b2: %v", act)
	}
	t.Logf("beta restarted: serving after %.1f s; the stop queued while it was down done %.1f s after the restart",
		serving.Seconds(), time.Since(restarted).Seconds())
	until("b2 stopped", 60*time.Second, func() bool { return vmOn(b2.id)["state"] == "stopped" })
	if p := qemuPid(b2.id); p != "" {
		t.Errorf("b2's QEMU runs on after its stop: %s", p)
	}
	until("b1 live again on alpha", 30*time.Second, func() bool {
		m := metrics(b1.id)
		at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"]))
		return live(b1.id) && at.After(restarted) && vmOn(b1.id)["node_state"] == "up"
	})
	t.Logf("b1 live again on alpha %.1f s after beta's restart", time.Since(restarted).Seconds())
	if p := qemuPid(b1.id); p != pids[b1.id] {
		t.Errorf("b1 was not re-attached: QEMU %q, was %q", p, pids[b1.id])
	}
	pg.WaitText("b1's page on alpha is live again", `[data-testid=metrics-badge]`, "live · agent", 30*time.Second)
	browsertest.Screenshot(t, ctx, "two-hosts")
}
