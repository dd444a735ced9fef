package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hearth/app"
	"hearth/internal/testkit/qemutest"
	"hearth/internal/testkit/storetest"
)

// snapshotReady reports whether the list holds snapshot name, ready.
func snapshotReady(t *testing.T, list []map[string]any, name string) bool {
	t.Helper()
	for _, sn := range list {
		if sn["name"] == name {
			return sn["state"] == app.SnapshotReady
		}
	}
	return false
}

// nodeEndpointsRefuse checks that a node's endpoints for other nodes (a VM's console, making
// a VM there) refuse everything but the node credential: none, an operator's API token, a
// wrong secret, an empty one, Basic.
func nodeEndpointsRefuse(t *testing.T, base, vmID, token string) {
	t.Helper()
	for _, auth := range []string{"", "Bearer " + token, "Node wrong-secret-wrong-secret-wrong-secret", "Node ", "Basic YWRtaW46cHc="} {
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/v1/node/vms/" + vmID + "/console", ""},
			{"POST", "/v1/node/vms", `{"name":"intruder","provision":false}`},
		} {
			req, _ := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s%s with %q: %d", r.method, base, r.path, auth, resp.StatusCode)
			}
		}
	}
}

// apiCall is one node's API as a test calls it: method, path, body → status, answer.
type apiCall func(method, path, body string) (int, map[string]any)

// followAction follows the action an answer says was queued for node, until it is over,
// and returns it and how long that took from the answer.
func followAction(t *testing.T, api apiCall, what, node string, out map[string]any) (map[string]any, time.Duration) {
	t.Helper()
	qa, _ := out["queued_action"].(map[string]any)
	if qa == nil || qa["node"] != node {
		t.Fatalf("%s was not queued for node %s: %v", what, node, out)
	}
	start := time.Now()
	for {
		_, act := api("GET", "/v1/actions/"+qa["id"].(string), "")
		if act["state"] == app.ActionDone || act["state"] == app.ActionFailed {
			return act, time.Since(start)
		}
		if time.Since(start) > 90*time.Second {
			t.Fatalf("%s never carried out: %v", what, act)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// doOn asks (POST path, no body) what node must do, and waits until it is done; it returns
// the time from the 202 answer to done.
func doOn(t *testing.T, api apiCall, path, node string) time.Duration {
	t.Helper()
	status, out := api("POST", path, "")
	if status != http.StatusAccepted {
		t.Fatalf("POST %s: %d %v (want it queued for %s)", path, status, out, node)
	}
	act, took := followAction(t, api, "POST "+path, node, out)
	if act["state"] != app.ActionDone {
		t.Fatalf("POST %s, carried out by %s: %v", path, node, act)
	}
	return took
}

// TestTwoNodesOneDatabase: two managers, alpha and beta, on one PostgreSQL with one node
// secret (here on one host, on loopback; the two-host test with their own networks comes
// with the rest of issue 18). A VM made on beta is started from alpha's API: the start is
// queued for beta, which carries it out; alpha's console endpoint reaches beta's guest
// (a command typed through alpha runs there, and beta audits the session as the operator);
// a stop asked of alpha is carried out by beta; beta's node endpoints refuse anything but
// the node credential.
func TestTwoNodesOneDatabase(t *testing.T) {
	needAgent(t)
	qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	initrd := qemutest.InitramfsWith(t, mods, qemutest.ShellInit, nil)
	dsn := storetest.PostgresDSN(t)
	secret := filepath.Join(t.TempDir(), "cluster.secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef-test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(name string) map[string]string {
		return map[string]string{"HEARTH_DATABASE_URL": dsn, "HEARTH_NODE": name, "HEARTH_CLUSTER_SECRET_FILE": secret,
			"HEARTH_HYPERVISOR": "qemu", "HEARTH_BRIDGE_CIDR": "none", "HEARTH_NODE_HEARTBEAT": "1s", "HEARTH_ADMIN_PASSWORD": "two-nodes-pw"}
	}
	node := func(name string) *Main {
		m, _ := startMain(t, env(name))
		return m
	}
	alpha, beta := node("alpha"), node("beta")
	token, err := alpha.Auth.CreateAPIToken(t.Context(), "ops", cliActor) // one database: both nodes take it
	if err != nil {
		t.Fatal(err)
	}
	on := func(m *Main) func(method, path, body string) (int, map[string]any) {
		return func(method, path, body string) (int, map[string]any) {
			return call(t, m.URL(), token, method, path, body)
		}
	}
	a, b := on(alpha), on(beta)
	_, nodes := a("GET", "/v1/nodes", "")
	if list, _ := nodes["nodes"].([]any); len(list) != 2 {
		t.Fatalf("nodes: %v", nodes)
	}
	body, _ := json.Marshal(map[string]any{"name": "on-beta", "kernel": kernel, "initrd": initrd, "provision": false,
		"boot_args": "console=ttyS0 panic=-1 rdinit=/init", "memory_mib": 256, "node": "beta"})
	status, vm := a("POST", "/v1/vms", string(body)) // asked of alpha, made by beta
	if status != 201 || vm["node"] != "beta" || vm["registration_token"] == nil {
		t.Fatalf("create on beta through alpha: %d %v", status, vm)
	}
	id := vm["id"].(string)
	if _, err := os.Stat(filepath.Join(beta.Config.DataDir, "vms", id)); err != nil && vm["provisioned"] == true {
		t.Errorf("beta has no directory for its VM: %v", err)
	}
	if status, out := a("POST", "/v1/vms", `{"name":"nowhere","provision":false,"node":"gamma"}`); status != 400 ||
		!strings.Contains(fmt.Sprint(out), "no node named") || !strings.Contains(fmt.Sprint(out), "beta (up") {
		t.Errorf("create on an unknown node: %d %v", status, out)
	}
	t.Cleanup(func() { exec.Command("pkill", "-KILL", "-f", "hearth-"+id).Run() })

	waitAction := func(what string, out map[string]any) (map[string]any, time.Duration) {
		t.Helper()
		return followAction(t, a, what, "beta", out)
	}
	status, out := a("POST", "/v1/vms/"+id+"/start", "")
	if status != 202 {
		t.Fatalf("start from alpha: %d %v", status, out)
	}
	act, took := waitAction("start", out)
	t.Logf("start asked of alpha, carried out by beta: %v in %.2f s (to the hypervisor running)", act["state"], took.Seconds())
	if act["state"] != app.ActionDone {
		t.Fatalf("start: %v", act)
	}
	if _, v := a("GET", "/v1/vms/"+id, ""); v["state"] != "running" || v["node_state"] != "up" {
		t.Errorf("on alpha after the start: %v", v)
	}
	// The New VM form on alpha offers the nodes and makes the VM on the one chosen.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := func(path string, v url.Values) *http.Response {
		req, _ := http.NewRequest("POST", alpha.URL()+path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := form("/login", url.Values{"name": {"admin"}, "password": {"two-nodes-pw"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in on alpha: %d", resp.StatusCode)
	}
	if resp, err := browser.Get(alpha.URL() + "/vms/new"); err != nil {
		t.Fatal(err)
	} else {
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(page), `data-testid="vm-node-select"`) || !strings.Contains(string(page), `value="beta"`) {
			t.Errorf("the New VM form does not offer the nodes")
		}
	}
	resp := form("/vms", url.Values{"name": {"from-form"}, "vcpus": {"1"}, "memory_mib": {"128"}, "node": {"beta"}, "provision": {"on"}})
	formID := ""
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/vms/") {
		t.Errorf("the form's create on beta: %d %q", resp.StatusCode, loc)
	} else if _, v := a("GET", "/v1"+loc, ""); v["node"] != "beta" || v["name"] != "from-form" || v["provisioned"] != true {
		t.Errorf("the form's VM: %v", v)
	} else {
		formID = v["id"].(string)
	}
	// Placement: beta's VM holds 256 MiB there, so the next VM without a node goes to alpha
	// (the same host's memory on both).
	if status, placed := b("POST", "/v1/vms", `{"name":"placed","provision":false,"memory_mib":128}`); status != 201 || placed["node"] != "alpha" {
		t.Errorf("placement asked of beta: %d %v", status, placed)
	}

	// The console through alpha: the session is passed on to beta, which holds it.
	hdr := http.Header{"Authorization": {"Bearer " + token}}
	viewer, resp, err := dialConsole(t, "ws"+strings.TrimPrefix(alpha.URL(), "http")+"/v1/vms/"+id+"/console", hdr)
	if err != nil {
		t.Fatalf("console through alpha: %v (%v)", err, resp)
	}
	viewer.until("HEARTH-MARKER: booted", 90*time.Second)
	mark := fmt.Sprintf("%d", time.Now().UnixNano()%100000)
	viewer.typeLine("echo VIA-ALPHA-''" + mark)
	viewer.until("VIA-ALPHA-"+mark, 60*time.Second)
	viewer.c.CloseNow()
	var audited string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && audited == ""; time.Sleep(50 * time.Millisecond) {
		entries, _ := beta.VMs.AuditLog(t.Context(), id, 20)
		for _, e := range entries {
			if e.Action == app.AuditConsole && strings.Contains(e.Actor, "token:ops") {
				audited = e.Actor + " " + e.Detail
			}
		}
	}
	if audited == "" {
		t.Error("beta did not audit the console session as the operator")
	}

	// What needs beta's host, asked of alpha, is done by beta: a snapshot (its files in
	// beta's data dir), its deletion, a rename, a guest IP (checked by beta's rules), an
	// agent install (one-click: queued for beta; with credentials: passed on at once).
	if status, out := a("POST", "/v1/vms/"+id+"/snapshots", `{"name":"via-alpha"}`); status != 202 {
		t.Errorf("snapshot of beta's VM through alpha: %d %v", status, out)
	}
	if list := waitSnapshots(t, a, id); !snapshotReady(t, list, "via-alpha") {
		t.Fatalf("the snapshot taken through alpha is not ready: %v", list)
	}
	if _, err := os.Stat(filepath.Join(beta.Config.DataDir, "vms", id, "snapshots", "via-alpha")); err != nil {
		t.Errorf("the snapshot is not in beta's data dir: %v", err)
	}
	if status, out := a("DELETE", "/v1/vms/"+id+"/snapshots/via-alpha", ""); status != 204 {
		t.Errorf("delete the snapshot through alpha: %d %v", status, out)
	}
	if _, err := os.Stat(filepath.Join(beta.Config.DataDir, "vms", id, "snapshots", "via-alpha")); !os.IsNotExist(err) {
		t.Errorf("the snapshot deleted through alpha is still in beta's data dir: %v", err)
	}
	if status, out := a("POST", "/v1/vms/"+id+"/guest-ip", `{"guest_ip":"8.8.8.8"}`); status != 400 || !strings.Contains(fmt.Sprint(out), "outside the guest networks") {
		t.Errorf("a guest IP outside beta's guest networks, through alpha: %d %v", status, out)
	}
	if status, out := a("POST", "/v1/vms/"+id+"/guest-ip", `{"guest_ip":"10.99.0.7"}`); status != 200 || out["guest_ip"] != "10.99.0.7" {
		t.Errorf("a guest IP through alpha: %d %v", status, out)
	}
	if status, out := a("POST", "/v1/vms/"+id+"/guest-ip", `{"guest_ip":null}`); status != 200 || out["guest_ip"] != nil {
		t.Errorf("clear the guest IP through alpha: %d %v", status, out)
	}
	status, out = a("POST", "/v1/vms/"+id+"/agent/install", "")
	if status != 202 {
		t.Fatalf("one-click install of beta's VM through alpha: %d %v", status, out)
	}
	if act, _ := waitAction("install", out); act["state"] != app.ActionFailed || !strings.Contains(fmt.Sprint(act["error"]), "has no guest IP") {
		t.Errorf("the queued install, run by beta on a VM without a guest IP: %v", act)
	}
	if status, out := a("POST", "/v1/vms/"+id+"/agent/install", `{"user":"root","password":"x"}`); status != 400 ||
		!strings.Contains(fmt.Sprint(out), "has no guest IP") {
		t.Errorf("an install with credentials through alpha (passed on to beta): %d %v", status, out)
	}
	if status, out := a("PATCH", "/v1/vms/"+formID, `{"name":"renamed-via-alpha"}`); status != 200 || out["name"] != "renamed-via-alpha" {
		t.Errorf("rename beta's VM through alpha: %d %v", status, out)
	}
	if resp, err := http.DefaultClient.Do(func() *http.Request {
		req, _ := http.NewRequest("GET", alpha.URL()+"/v1/vms/"+formID+"/seed.iso", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		return req
	}()); err != nil {
		t.Fatal(err)
	} else {
		iso, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(iso), "renamed-via-alpha") {
			t.Errorf("the renamed VM's seed through alpha: %d, %d bytes", resp.StatusCode, len(iso))
		}
	}

	// The same from alpha's pages (their forms): a snapshot, its deletion, a guest IP.
	if resp := form("/vms/"+id+"/snapshots", url.Values{"name": {"via-form"}}); resp.StatusCode >= 400 {
		t.Errorf("the snapshot form on alpha for beta's VM: %d", resp.StatusCode)
	}
	if list := waitSnapshots(t, a, id); !snapshotReady(t, list, "via-form") {
		t.Fatalf("the snapshot taken with alpha's form is not ready: %v", list)
	}
	if resp := form("/vms/"+id+"/snapshots/via-form/delete", url.Values{}); resp.StatusCode >= 400 {
		t.Errorf("the snapshot delete form on alpha: %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(beta.Config.DataDir, "vms", id, "snapshots", "via-form")); !os.IsNotExist(err) {
		t.Errorf("the snapshot deleted with alpha's form is still in beta's data dir: %v", err)
	}
	if resp := form("/vms/"+id+"/guest-ip", url.Values{"guest_ip": {"10.99.0.8"}, "action": {"set"}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the guest IP form on alpha: %d", resp.StatusCode)
	} else if _, v := a("GET", "/v1/vms/"+id, ""); v["guest_ip"] != "10.99.0.8" || v["guest_ip_source"] != "manual" {
		t.Errorf("after alpha's guest IP form: %v", v)
	}
	if resp := form("/vms/"+id+"/guest-ip", url.Values{"guest_ip": {"127.0.0.1"}, "action": {"set"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a loopback guest IP with alpha's form (beta refuses it): %d", resp.StatusCode)
	}
	form("/vms/"+id+"/guest-ip", url.Values{"action": {"clear"}})

	// Beta's node endpoints: the node credential only.
	nodeEndpointsRefuse(t, beta.URL(), id, token)

	// Beta goes away (its VM runs on: a manager's stop leaves VMs running): within three
	// heartbeats alpha shows it down and its VM as node down, and nothing else happens to it.
	betaDir := beta.Config.DataDir
	beta.Close()
	gone := time.Now()
	for {
		_, v := a("GET", "/v1/vms/"+id, "")
		if v["node_state"] == "down" {
			t.Logf("beta stopped → alpha shows it down: %.1f s (heartbeat 1 s, down after 3 missed)", time.Since(gone).Seconds())
			if v["state"] != "running" {
				t.Errorf("a down node's VM is recorded %v", v["state"])
			}
			break
		}
		if time.Since(gone) > 10*time.Second {
			t.Fatalf("beta never shown down: %v", v)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A stop asked while beta is down waits for it, and beta carries it out when it is back
	// (after re-attaching to its VM).
	status, out = a("POST", "/v1/vms/"+id+"/stop", "")
	if status != 202 {
		t.Fatalf("stop from alpha: %d %v", status, out)
	}
	time.Sleep(500 * time.Millisecond)
	if _, v := a("GET", "/v1/vms/"+id, ""); v["state"] != "running" {
		t.Errorf("a stop was carried out while its node was down: %v", v)
	}
	benv := env("beta")
	benv["HEARTH_DATA_DIR"] = betaDir
	beta, _ = startMain(t, benv)
	if act, took := waitAction("stop", out); act["state"] != app.ActionDone {
		t.Errorf("stop: %v", act)
	} else {
		t.Logf("stop asked of alpha, carried out by beta in %.0f ms", took.Seconds()*1000)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, v := a("GET", "/v1/vms/"+id, ""); v["state"] == "stopped" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("never stopped: %v", v)
		}
	}
	// Delete from alpha: beta deletes it, its files (on beta) too.
	status, out = a("DELETE", "/v1/vms/"+id, "")
	if status != 202 {
		t.Fatalf("delete from alpha: %d %v", status, out)
	}
	if act, _ := waitAction("delete", out); act["state"] != app.ActionDone {
		t.Errorf("delete: %v", act)
	}
	if status, _ := a("GET", "/v1/vms/"+id, ""); status != 404 {
		t.Errorf("after the delete: %d", status)
	}
	if _, err := os.Stat(filepath.Join(beta.Config.DataDir, "vms", id)); !os.IsNotExist(err) {
		t.Errorf("beta kept the deleted VM's files: %v", err)
	}
}
