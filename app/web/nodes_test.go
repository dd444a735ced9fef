package web

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/node"
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
	if status, body := e.api("POST", "/v1/vms/on-beta/stop", "", ""); status == 200 || status == 202 {
		t.Errorf("alpha stopped beta's VM: %d %s", status, body)
	}
	if status, body := e.api("DELETE", "/v1/vms/on-beta", "", ""); status != 409 || !strings.Contains(body, "runs on node beta") {
		t.Errorf("alpha deleted beta's VM: %d %s", status, body)
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
	// beta heartbeats again: up, and its VM shows as recorded.
	if _, err := db.Heartbeat(ctx, "beta"); err != nil {
		t.Fatal(err)
	}
	if _, body := e.api("GET", "/v1/vms/on-beta", "", ""); strings.Contains(body, "node_state\":\"down") {
		t.Errorf("after beta is back: %s", body)
	}
}
