package web

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/config"
	"hearth/app/metrics"
	"hearth/app/store"
	"hearth/app/vm"
	"hearth/guest/collect"
	"hearth/guest/server"
)

// metricsEnv: a VM recorded as running whose guest agent is a real hearth-agent handler on
// a loopback address (the rules admit loopback for this test only).
func metricsEnv(t *testing.T) (*env, *app.VM, *metrics.Collector) {
	t.Helper()
	e := newEnv(t, nil)
	cidrs, _ := config.ParseCIDRs("127.0.0.0/8")
	e.vms = vm.NewService(e.db, vm.Rules{CIDRs: cidrs, AllowLoopback: true, HostAddrs: func() []netip.Addr { return nil }}, e.dataDir)
	l, err := net.Listen("tcp", "127.0.0.9:0")
	if err != nil {
		t.Fatal(err)
	}
	sampler := collect.NewSampler(collect.NewReader(), time.Second, "test-agent")
	sampler.Sample()
	time.Sleep(50 * time.Millisecond)
	sampler.Sample()
	srv := &http.Server{Handler: server.New(sampler, server.Options{Token: "hag_metrics_test_token", Version: "test-agent"})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	ctx := context.Background()
	v, _ := e.createVM("watched")
	e.db.SetRun(ctx, v.ID, store.Run{State: app.VMRunning, Driver: "qemu"}, nil)
	e.db.SetGuestIP(ctx, v.ID, "127.0.0.9", app.SourceAgent, nil)
	e.db.SetAgentToken(ctx, v.ID, "hag_metrics_test_token")
	c := metrics.New(e.vms, metrics.Options{AgentPort: l.Addr().(*net.TCPAddr).Port, Interval: time.Second})
	e.srv.Config.Handler = New(Deps{VMs: e.vms, Auth: e.auth, Metrics: c, Ping: e.db.Ping})
	v, _ = e.vms.Get(ctx, v.ID)
	return e, v, c
}

func TestVMMetricsAPIAndPanel(t *testing.T) {
	e, v, c := metricsEnv(t)
	status, body := e.api("GET", "/v1/vms/"+v.ID+"/metrics", "", "")
	if status != 200 || !strings.Contains(body, `"status":"waiting"`) {
		t.Errorf("before a poll: %d %s", status, body)
	}
	c.Round(context.Background())
	time.Sleep(20 * time.Millisecond)
	c.Round(context.Background())
	status, body = e.api("GET", "/v1/vms/"+v.ID+"/metrics", "", "")
	var m struct {
		Status, Source string
		CPU            *float64 `json:"cpu_usage_percent"`
		Mem            *float64 `json:"memory_usage_percent"`
		Time           time.Time
		AgentVersion   string `json:"agent_version"`
	}
	json.Unmarshal([]byte(body), &m)
	if status != 200 || m.Status != "live" || m.Source != "agent" || m.CPU == nil || m.Mem == nil || m.Time.IsZero() || m.AgentVersion != "test-agent" {
		t.Fatalf("after polls: %d %s", status, body)
	}
	e.signIn()
	_, _, page := e.do("GET", "/vms/"+v.ID, "", nil)
	if !strings.Contains(page, `data-badge="live"`) || !strings.Contains(page, "live · agent") || !strings.Contains(page, `data-stat="Memory"`) {
		t.Error("VM page lacks the live badge or the memory figure")
	}
	_, _, panel := e.do("GET", "/vms/"+v.ID+"/metrics?window=1h", "", map[string]string{"HX-Request": "true"})
	// The panel polls as often as the collector samples (1 s here).
	if !strings.Contains(panel, `hx-trigger="every 1s"`) || !strings.Contains(panel, `<path d="M`) || strings.Contains(panel, "<html") {
		t.Errorf("polled panel (chart path, polling):\n%.600s", panel)
	}
	// The list shows a CPU and a memory sparkline with current values for the VM.
	_, _, list := e.do("GET", "/vms/list", "", map[string]string{"HX-Request": "true"})
	row := list[strings.Index(list, `data-vm="watched"`):]
	row = row[:strings.Index(row, "</tr>")]
	if strings.Count(row, `<path d="M`) != 2 || !strings.Contains(row, " %</span>") {
		t.Errorf("list row without sparklines:\n%s", row)
	}
	// The dashboard counts it as running with a live agent.
	_, _, dash := e.do("GET", "/dashboard", "", nil)
	if !strings.Contains(dash, `data-tile="Agents"`) || !strings.Contains(dash, "1 live") || !strings.Contains(dash, "1 running") {
		t.Errorf("dashboard does not count the live VM")
	}
	// The VM stops: the badge says so at once.
	e.db.SetRun(context.Background(), v.ID, store.Run{State: app.VMStopped}, nil)
	_, _, panel = e.do("GET", "/vms/"+v.ID+"/metrics", "", map[string]string{"HX-Request": "true"})
	if !strings.Contains(panel, `data-badge="stopped"`) {
		t.Errorf("stopped VM's badge:\n%.300s", panel)
	}
}

func TestPrometheusEndpoint(t *testing.T) {
	e, v, c := metricsEnv(t)
	c.Round(context.Background())
	if status, _, _ := e.do("GET", "/metrics", "", nil); status != 401 {
		t.Errorf("without a token: %d", status)
	}
	status, _, body := e.do("GET", "/metrics", "", map[string]string{"Authorization": "Bearer " + e.token})
	if status != 200 {
		t.Fatalf("metrics: %d %s", status, body)
	}
	for _, want := range []string{`hearth_vm_memory_usage_ratio{vm_id="` + v.ID + `",vm_name="watched"}`,
		`hearth_vm_agent_up{agent_version="test-agent",vm_id="` + v.ID + `",vm_name="watched"} 1`,
		"hearth_collector_rounds_total 1", "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Errorf("Prometheus output lacks %q", want)
		}
	}
}

// TestLongWindowsReadTheStore: memory keeps a quarter hour; the hour and the day are drawn
// from the stored samples, the week from the stored minute averages.
func TestLongWindowsReadTheStore(t *testing.T) {
	e, v, _ := metricsEnv(t)
	ctx := context.Background()
	c := metrics.New(e.vms, metrics.Options{Interval: time.Second, Store: e.db})
	e.srv.Config.Handler = New(Deps{VMs: e.vms, Auth: e.auth, Metrics: c, Ping: e.db.Ping})
	cpu, mem := 42.0, 30.0
	now := time.Now().UTC()
	var rows []store.SampleRow
	for i := 0; i < 10; i++ { // 40 min ago: past memory, within the hour
		rows = append(rows, store.SampleRow{VMID: v.ID, At: now.Add(-40*time.Minute + time.Duration(i)*time.Second), Source: "agent", CPU: &cpu, Mem: &mem})
	}
	for i := 0; i < 10; i++ { // three days ago: folded into minute averages below
		rows = append(rows, store.SampleRow{VMID: v.ID, At: now.Add(-72*time.Hour + time.Duration(i)*time.Minute), Source: "agent", CPU: &cpu, Mem: &mem})
	}
	if err := e.db.InsertSamples(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.CompactSamples(ctx, now, 24*time.Hour, 7*24*time.Hour, 1000); err != nil {
		t.Fatal(err)
	}
	e.signIn()
	var last string
	paths := func(window string) int {
		_, _, p := e.do("GET", "/vms/"+v.ID+"/metrics?window="+window, "", map[string]string{"HX-Request": "true"})
		if !strings.Contains(p, `data-window="`+window+`"`) && !strings.Contains(p, "window="+window) {
			t.Errorf("%s: the panel does not offer the window", window)
		}
		last = p
		return strings.Count(p, `<path d="M`)
	}
	if n := paths("15m"); n != 0 {
		t.Errorf("15m: %d lines drawn from nothing in memory", n)
	}
	h, d, w := paths("1h"), paths("24h"), paths("7d")
	if h < 2 || d != h { // CPU and memory lines from the 40-minute-old samples
		t.Errorf("1h: %d lines, 24h: %d", h, d)
	}
	// The week's line starts three days ago, four sevenths into the 600-wide chart: the
	// minute averages (the raw samples of then are folded away).
	if i := strings.Index(last, `<path d="M`); w < 2 || i < 0 || !strings.HasPrefix(last[i+len(`<path d="M`):], "342") {
		t.Errorf("7d: %d lines, first %.40s", w, last[max(i, 0):])
	}
}
