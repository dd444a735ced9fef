package web

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/metrics"
	"hearth/app/node"
	"hearth/app/store"
	"hearth/app/vm"
	"hearth/internal/testkit/storetest"
)

// TestNodesAndNodeDown (PostgreSQL, two nodes): GET /v1/nodes lists both with their state;
// a node that stops heartbeating is down after three intervals, and its VMs show as node
// down (API node_state, the list, the VM page with its note, no buttons), not stopped or
// failed; this node refuses to act on them; the Nodes page shows both.
func TestNodesAndNodeDown(t *testing.T) {
	db := storetest.Postgres(t)
	e := newEnv(t, db)
	ctx := context.Background()
	alpha := &node.Service{DB: db, Self: app.Node{Name: "alpha", URL: "http://127.0.0.1:1", Interval: time.Second, Version: "t"}}
	beta := &node.Service{DB: db, Self: app.Node{Name: "beta", URL: "http://127.0.0.1:2", Interval: 300 * time.Millisecond, Version: "t"}}
	for _, n := range []*node.Service{alpha, beta} {
		if err := n.Register(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.vms.WithNode("alpha")
	v := &app.VM{ID: "on-beta", Name: "web-b", State: app.VMRunning, VCPUs: 1, MemoryMiB: 256, MAC: "02:00:00:00:00:02", Node: "beta"}
	if err := db.CreateVM(ctx, v, "hb", nil); err != nil {
		t.Fatal(err)
	}
	mine, _ := e.createVM("web-a")
	e.srv.Config.Handler = New(Deps{VMs: e.vms, Auth: e.auth, Nodes: alpha, Ping: db.Ping})

	nodes := func() map[string]map[string]any {
		status, body := e.api("GET", "/v1/nodes", "", "")
		var out struct{ Nodes []map[string]any }
		if status != 200 || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("nodes: %d %s", status, body)
		}
		m := map[string]map[string]any{}
		for _, n := range out.Nodes {
			m[n["name"].(string)] = n
		}
		return m
	}
	if n := nodes(); n["alpha"]["state"] != "up" || n["beta"]["state"] != "up" || n["alpha"]["self"] != true || n["beta"]["vms"] != 1.0 || n["beta"]["running"] != 1.0 {
		t.Errorf("both up: %v", n)
	}
	// beta stops heartbeating (it never ran its loop): down after 3 × 300 ms.
	time.Sleep(time.Second)
	if n := nodes(); n["beta"]["state"] != "down" || n["alpha"]["state"] != "down" && n["alpha"]["state"] != "up" {
		t.Errorf("after beta's missed heartbeats: %v", n)
	}
	status, body := e.api("GET", "/v1/vms/on-beta", "", "")
	if status != 200 || !strings.Contains(body, `"node":"beta"`) || !strings.Contains(body, `"node_state":"down"`) || !strings.Contains(body, `"state":"running"`) {
		t.Errorf("a VM of a down node: %d %s", status, body)
	}
	status, body = e.api("GET", "/v1/vms/"+mine.ID, "", "")
	if !strings.Contains(body, `"node":"alpha"`) {
		t.Errorf("a VM made here belongs to %s", body)
	}
	// A stop asked of alpha for beta's VM is queued for beta, which is down: it waits.
	status, body = e.api("POST", "/v1/vms/on-beta/stop", "", "")
	var queued struct {
		State        string                                 `json:"state"`
		QueuedAction struct{ ID, Node, State, Href string } `json:"queued_action"`
	}
	json.Unmarshal([]byte(body), &queued)
	if status != 202 || queued.QueuedAction.Node != "beta" || queued.QueuedAction.State != "queued" || queued.State != "running" {
		t.Fatalf("stop of beta's VM asked of alpha: %d %s", status, body)
	}
	if p, _ := e.vms.PendingActions(ctx, "on-beta"); len(p) != 1 {
		t.Errorf("pending: %v", p)
	}
	status, body = e.api("DELETE", "/v1/vms/on-beta", "", "")
	var deleted struct {
		QueuedAction struct{ ID, Action string } `json:"queued_action"`
	}
	json.Unmarshal([]byte(body), &deleted)
	if status != 202 || deleted.QueuedAction.Action != "delete" {
		t.Errorf("delete of beta's VM asked of alpha: %d %s", status, body)
	}
	e.signIn()
	_, _, page := e.do("GET", "/vms/on-beta", "", nil)
	if !strings.Contains(page, `data-state="node down"`) || !strings.Contains(page, `data-testid="node-down-note"`) {
		t.Errorf("the VM page of a down node's VM lacks node down")
	}
	_, _, list := e.do("GET", "/vms", "", nil)
	if !strings.Contains(list, `data-state="node down"`) || !strings.Contains(list, `data-testid="vm-node"`) {
		t.Errorf("the list does not show node down, or the VMs' nodes")
	}
	_, _, np := e.do("GET", "/nodes", "", nil)
	if !strings.Contains(np, `data-node="beta" data-node-state="down"`) || !strings.Contains(np, "(this one)") {
		t.Errorf("the Nodes page: %.400s", np)
	}
	if !strings.Contains(page, `data-testid="pending-actions"`) || !strings.Contains(page, "stop · asked of node beta") {
		t.Errorf("the VM page does not show the queued stop")
	}
	// beta heartbeats again: up, and its VM shows as recorded.
	if _, err := db.Heartbeat(ctx, "beta"); err != nil {
		t.Fatal(err)
	}
	if _, body := e.api("GET", "/v1/vms/on-beta", "", ""); strings.Contains(body, "node_state\":\"down") {
		t.Errorf("after beta is back: %s", body)
	}
	// beta's reconciler catches up on what was queued while it was down (this beta runs no
	// hypervisor, so the stop fails there, saying why), then hears of a new one at once.
	betaVMs := vm.NewService(db, vm.Rules{}, t.TempDir()).WithNode("beta")
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go betaVMs.RunActions(rctx, time.Hour, slog.New(slog.DiscardHandler))
	waitAction := func(id string) (map[string]any, time.Duration) {
		start := time.Now()
		for {
			_, body := e.api("GET", "/v1/actions/"+id, "", "")
			var a map[string]any
			json.Unmarshal([]byte(body), &a)
			if a["state"] == "done" || a["state"] == "failed" {
				return a, time.Since(start)
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("action %s never carried out: %s", id, body)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	a, took := waitAction(queued.QueuedAction.ID)
	t.Logf("caught up on return: %.0f ms; %v: %v", took.Seconds()*1000, a["state"], a["error"])
	if a["state"] != "failed" || !strings.Contains(fmt.Sprint(a["error"]), "runs no hypervisor") || a["by"] != "token:test" {
		t.Errorf("the queued stop on beta: %v", a)
	}
	if a, _ := waitAction(deleted.QueuedAction.ID); a["state"] != "failed" || !strings.Contains(fmt.Sprint(a["error"]), "stop it before deleting") {
		t.Errorf("the queued delete of a running VM on beta: %v", a)
	}
	time.Sleep(100 * time.Millisecond) // listening
	_, body = e.api("POST", "/v1/vms/on-beta/restart", "", "")
	json.Unmarshal([]byte(body), &queued)
	a, took = waitAction(queued.QueuedAction.ID)
	t.Logf("a queued restart heard by beta (LISTEN/NOTIFY, no sweep for an hour): %.0f ms", took.Seconds()*1000)
	if a["action"] != "restart" || took > 5*time.Second {
		t.Errorf("restart on beta: %v after %v", a, took)
	}
	if p, _ := e.vms.PendingActions(ctx, "on-beta"); len(p) != 0 {
		t.Errorf("still pending: %v", p)
	}
	if status, body := e.api("GET", "/v1/actions/nope", "", ""); status != 404 {
		t.Errorf("an unknown action: %d %s", status, body)
	}
}

// TestRemoteMetrics (PostgreSQL): alpha shows the live numbers of a VM that beta polls, from
// the samples beta's collector stores each round: live with the agent's figures on the API
// and the VM page, with a chart; stale once beta's samples stop for three intervals.
func TestRemoteMetrics(t *testing.T) {
	db := storetest.Postgres(t)
	e := newEnv(t, db)
	ctx := context.Background()
	alpha := &node.Service{DB: db, Self: app.Node{Name: "alpha", URL: "http://127.0.0.1:1", Interval: time.Second}}
	if err := alpha.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.RegisterNode(ctx, &app.Node{Name: "beta", URL: "http://127.0.0.1:2", Interval: time.Second}); err != nil {
		t.Fatal(err)
	}
	e.vms.WithNode("alpha")
	v := &app.VM{ID: "on-beta", Name: "web-b", State: app.VMRunning, VCPUs: 1, MemoryMiB: 256, MAC: "02:00:00:00:00:02", Node: "beta"}
	if err := db.CreateVM(ctx, v, "hb", nil); err != nil {
		t.Fatal(err)
	}
	c := metrics.New(e.vms, metrics.Options{Interval: time.Second, Store: db})
	e.srv.Config.Handler = New(Deps{VMs: e.vms, Auth: e.auth, Nodes: alpha, Metrics: c, Ping: db.Ping})
	metricsOf := func() map[string]any {
		_, body := e.api("GET", "/v1/vms/on-beta/metrics", "", "")
		var m map[string]any
		json.Unmarshal([]byte(body), &m)
		return m
	}
	if m := metricsOf(); m["status"] != "waiting" || m["node"] != "beta" {
		t.Errorf("before beta stored a sample: %v", m)
	}
	cpu, mem := 42.5, 61.0
	for i := 3; i >= 0; i-- { // what beta's collector stores, one row a round
		if err := db.InsertSamples(ctx, []store.SampleRow{{VMID: "on-beta", At: time.Now().Add(-time.Duration(i) * time.Second).UTC(), Source: "agent", CPU: &cpu, Mem: &mem}}); err != nil {
			t.Fatal(err)
		}
	}
	if m := metricsOf(); m["status"] != "live" || m["source"] != "agent" || m["cpu_usage_percent"] != 42.5 || m["memory_usage_percent"] != 61.0 {
		t.Errorf("beta's VM on alpha's API: %v", m)
	}
	e.signIn()
	_, _, page := e.do("GET", "/vms/on-beta", "", nil)
	if !strings.Contains(page, "live · agent") || !strings.Contains(page, "42.5 %") || !strings.Contains(page, "61.0 %") {
		t.Errorf("beta's VM on alpha's page lacks the live figures")
	}
	// The list filters and sorts beta's VM by what beta stored, and draws its sparkline
	// from it, as for alpha's own (one of which runs with no figures yet).
	own := &app.VM{ID: "on-alpha", Name: "web-a", State: app.VMRunning, VCPUs: 1, MemoryMiB: 256, MAC: "02:00:00:00:00:03", Node: "alpha"}
	if err := db.CreateVM(ctx, own, "ha", nil); err != nil {
		t.Fatal(err)
	}
	listed := func(query string) []string {
		_, _, page := e.do("GET", "/vms/list?"+query, "", nil)
		var out []string
		for _, part := range strings.Split(page, `data-vm="`)[1:] {
			out = append(out, part[:strings.Index(part, `"`)])
		}
		return out
	}
	if got := listed("badge=live"); len(got) != 1 || got[0] != "web-b" {
		t.Errorf("badge=live on alpha: %v", got)
	}
	if got := listed("badge=waiting"); len(got) != 1 || got[0] != "web-a" {
		t.Errorf("badge=waiting on alpha: %v", got)
	}
	if got := listed("sort=cpu"); len(got) != 2 || got[0] != "web-b" {
		t.Errorf("sort=cpu on alpha: %v", got)
	}
	if _, _, page := e.do("GET", "/vms/list", "", nil); !strings.Contains(page, "61 %") {
		t.Errorf("the list's sparkline for beta's VM lacks its memory figure (61 %%)")
	}
	// Alpha's host dashboard counts alpha's VMs (beta's use beta's CPUs and memory).
	if _, _, page := e.do("GET", "/dashboard/panel", "", nil); !strings.Contains(page, "1 running") || !strings.Contains(page, "1 / ") {
		t.Errorf("alpha's dashboard panel does not count alpha's one running VM only:\n%.1500s", page)
	}
	if _, _, page := e.do("GET", "/dashboard", "", nil); !strings.Contains(page, "its own VMs only, against its own CPUs and memory; 1 more on the other nodes") {
		t.Errorf("alpha's dashboard does not say beta's VM is elsewhere:\n%s", page[strings.Index(page, "This host"):][:600])
	}
	time.Sleep(3100 * time.Millisecond)
	if m := metricsOf(); m["status"] != "stale" {
		t.Errorf("after beta's samples stopped: %v", m)
	}
	if got := listed("badge=stale"); len(got) != 1 || got[0] != "web-b" {
		t.Errorf("badge=stale on alpha: %v", got)
	}
}
