package web

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/config"
	"hearth/app/metrics"
	"hearth/app/store"
	"hearth/app/vm"
)

// TestPausedVMs: a paused VM's agent is not asked (its requests stay at zero while a
// running VM's agent is polled each round); its badge is paused in the API, the list
// filters and the page, which says what paused means; the stopped badge
// does not take it; Delete and Edit are refused while it is paused; a manager without a
// hypervisor refuses pause and snapshots clearly.
func TestPausedVMs(t *testing.T) {
	e := newEnv(t, nil)
	cidrs, _ := config.ParseCIDRs("127.0.0.0/8")
	e.vms = vm.NewService(e.db, vm.Rules{CIDRs: cidrs, AllowLoopback: true, HostAddrs: func() []netip.Addr { return nil }}, e.dataDir)
	ctx := context.Background()
	var asked [2]atomic.Int32
	port := 0
	for i, name := range []string{"runs", "frozen"} {
		v := &app.VM{ID: "id-" + name, Name: name, State: app.VMDefined, VCPUs: 1, MemoryMiB: 256, MAC: "02:00:00:00:00:01"}
		if err := e.db.CreateVM(ctx, v, "h"+name, nil); err != nil {
			t.Fatal(err)
		}
		state := app.VMRunning
		if name == "frozen" {
			state = app.VMPaused
		}
		e.db.SetRun(ctx, v.ID, store.Run{State: state, Driver: "qemu", PID: os.Getpid()}, nil)
		host := []string{"127.0.0.31", "127.0.0.32"}[i]
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			t.Skipf("listen on %s: %v", host, err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		n := &asked[i]
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.Write([]byte(`{"cpu_usage_percent": 12, "memory_usage_percent": 34, "agent_version": "t"}`))
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		e.db.SetGuestIP(ctx, v.ID, host, app.SourceAgent, nil)
	}
	c := metrics.New(e.vms, metrics.Options{AgentPort: port, Interval: time.Minute, Timeout: time.Second})
	c.Round(ctx)
	time.Sleep(20 * time.Millisecond)
	c.Round(ctx)
	if asked[0].Load() != 2 || asked[1].Load() != 0 {
		t.Errorf("agent requests: running %d, paused %d (want 2 and 0)", asked[0].Load(), asked[1].Load())
	}
	e.srv.Config.Handler = New(Deps{VMs: e.vms, Auth: e.auth, Metrics: c, Ping: e.db.Ping})

	status, body := e.api("GET", "/v1/vms/id-frozen/metrics", "", "")
	var m map[string]any
	json.Unmarshal([]byte(body), &m)
	if status != 200 || m["status"] != "paused" || m["source"] != "paused" || m["cpu_usage_percent"] == nil {
		t.Errorf("paused VM's metrics: %d %s", status, body)
	}
	for query, want := range map[string]string{"badge=paused": "frozen", "state=paused": "frozen", "badge=live": "runs", "badge=stopped": ""} {
		status, body := e.api("GET", "/v1/vms?"+query, "", "")
		var p struct {
			VMs []struct{ Name string } `json:"vms"`
		}
		json.Unmarshal([]byte(body), &p)
		var names []string
		for _, v := range p.VMs {
			names = append(names, v.Name)
		}
		if status != 200 || strings.Join(names, ",") != want {
			t.Errorf("%s: %d %v, want %q", query, status, names, want)
		}
	}
	e.signIn()
	_, _, page := e.do("GET", "/vms/id-frozen", "", nil)
	// (Its Resume button needs a manager that runs VMs: TestBrowserSnapshot clicks it.)
	for _, want := range []string{`data-state="paused"`, `data-testid="paused-note"`, "paused · agent not polled"} {
		if !strings.Contains(page, want) {
			t.Errorf("the paused VM's page lacks %s", want)
		}
	}
	if strings.Contains(page, `data-testid="vm-pause"`) {
		t.Error("a paused VM is offered Pause")
	}
	if status, body := e.api("DELETE", "/v1/vms/id-frozen", "", ""); status != 409 || !strings.Contains(body, "paused") {
		t.Errorf("delete a paused VM: %d %s", status, body)
	}
	if status, body := e.api("PATCH", "/v1/vms/id-frozen", `{"vcpus": 2}`, ""); status != 409 {
		t.Errorf("edit a paused VM: %d %s", status, body)
	}
	// Without a runtime this manager cannot pause or snapshot: it says so.
	if status, body := e.api("POST", "/v1/vms/id-runs/pause", "", ""); status != 503 {
		t.Errorf("pause without a hypervisor: %d %s", status, body)
	}
	if status, body := e.api("POST", "/v1/vms/id-runs/snapshots", `{"name":"s"}`, ""); status != 503 {
		t.Errorf("snapshot without a hypervisor: %d %s", status, body)
	}
	if status, body := e.api("GET", "/v1/vms/id-runs/snapshots", "", ""); status != 200 || !strings.Contains(body, `"snapshots":[]`) {
		t.Errorf("list snapshots: %d %s", status, body)
	}
	if status, body := e.api("GET", "/v1/vms/nope/snapshots", "", ""); status != 404 {
		t.Errorf("snapshots of no VM: %d %s", status, body)
	}
}
