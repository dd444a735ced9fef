package web

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/config"
	"hearth/app/metrics"
	"hearth/app/store"
	"hearth/app/vm"
	"hearth/internal/testkit/agenttest"
)

// TestMetricsPanelTellsWhatHappens: a real agent handler over a /proc the test writes.
// Its first answer has no CPU share yet: the page says "measuring…", not "—". Then the
// story's loop: 20 MiB written into the page cache in 5 s, none of it on the device; the
// page shows both, the filesystem at 93 % warns, and the API carries the same. The agent
// goes missing: the CPU chart draws the host's figure as its own line, and the source
// strip says which stretch came from where. A restart shows none of the last run's numbers.
func TestMetricsPanelTellsWhatHappens(t *testing.T) {
	e := newEnv(t, nil)
	cidrs, _ := config.ParseCIDRs("127.0.0.0/8")
	e.vms = vm.NewService(e.db, vm.Rules{CIDRs: cidrs, AllowLoopback: true, HostAddrs: func() []netip.Addr { return nil }}, e.dataDir)
	l, err := net.Listen("tcp", "127.0.0.10:0")
	if err != nil {
		t.Fatal(err)
	}
	a := agenttest.New(t)
	a.Size, a.Used, a.Avail = 10<<30, 9_500<<20, 500<<20
	a.VMStat(1000, 500, 100)
	a.Sample() // one reading: no CPU share yet
	a.Serve(l, "hag_panel_token_0123456789")
	ctx := context.Background()
	v, _ := e.createVM("story")
	e.db.SetRun(ctx, v.ID, store.Run{State: app.VMRunning, Driver: "qemu", PID: os.Getpid()}, nil)
	e.db.SetGuestIP(ctx, v.ID, "127.0.0.10", app.SourceAgent, nil)
	e.db.SetAgentToken(ctx, v.ID, "hag_panel_token_0123456789")
	c := metrics.New(e.vms, metrics.Options{AgentPort: l.Addr().(*net.TCPAddr).Port, Interval: time.Second})
	e.srv.Config.Handler = New(Deps{VMs: e.vms, Auth: e.auth, Metrics: c, Ping: e.db.Ping})
	e.signIn()
	panel := func() string {
		_, _, p := e.do("GET", "/vms/"+v.ID+"/metrics", "", map[string]string{"HX-Request": "true"})
		return p
	}
	stat := func(p, label string) string {
		i := strings.Index(p, `data-stat="`+label+`"`)
		if i < 0 {
			t.Fatalf("no %s figure in the panel", label)
		}
		return p[i : i+strings.Index(p[i:], "</div>")]
	}

	c.Round(ctx)
	p := panel()
	if !strings.Contains(p, `data-badge="live"`) || !strings.Contains(stat(p, "CPU"), "measuring…") || strings.Contains(stat(p, "CPU"), "—") {
		t.Errorf("live without a CPU share yet: %s", stat(p, "CPU"))
	}

	a.Now = a.Now.Add(5 * time.Second)
	a.VMStat(1000+5120, 500, 100)
	a.AdvanceCPU()
	a.Sample()
	c.Round(ctx)
	p = panel()
	if w := stat(p, "Disk write"); !strings.Contains(w, "4.0 MiB/s by programs") || !strings.Contains(w, " device") || !strings.Contains(w, "nr_dirtied") {
		t.Errorf("disk write figure: %s", w)
	}
	if !strings.Contains(p, `data-mount="/"`) || !strings.Contains(p, `data-warn="true"`) || !strings.Contains(p, "nearly full") {
		t.Errorf("the 93 %% full root filesystem does not warn:\n%s", p[strings.Index(p, "</dl>"):])
	}
	_, body := e.api("GET", "/v1/vms/"+v.ID+"/metrics", "", "")
	var m struct {
		ProgWrite *float64 `json:"disk_write_by_programs_bytes_per_second"`
		PageCache *struct {
			Dirtied uint64 `json:"dirtied_bytes"`
		} `json:"page_cache"`
		Filesystems []struct {
			Mountpoint string
			Used       uint64 `json:"used_bytes"`
		}
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil || m.ProgWrite == nil || *m.ProgWrite != 4<<20 || m.PageCache == nil ||
		m.PageCache.Dirtied != 6120*4096 || len(m.Filesystems) != 1 || m.Filesystems[0].Used != 9_500<<20 {
		t.Errorf("API: %v %s", err, body)
	}

	// The agent goes missing (its address now answers nothing): host fallback.
	e.db.SetGuestIP(ctx, v.ID, "127.0.0.11", app.SourceManual, nil)
	c.Round(ctx)
	p = panel()
	if cpu := stat(p, "CPU"); !strings.Contains(p, `data-badge="host"`) || !strings.Contains(cpu, "hypervisor process") {
		t.Errorf("host fallback's CPU figure: %s", cpu)
	}
	if !strings.Contains(p, `data-series="guest (agent)"`) ||
		!strings.Contains(p, `data-series="hypervisor process (host fallback)"`) {
		t.Errorf("the CPU chart does not draw agent and host as two lines:\n%s", p[strings.Index(p, `data-chart="CPU %"`):])
	}
	if !strings.Contains(p, `data-source="agent"`) || !strings.Contains(p, `data-source="host"`) {
		t.Error("the source strip does not show both sources")
	}
	for _, title := range []string{"Network (hypervisor)", "Disk"} {
		if !strings.Contains(p, `data-chart="`+title+`"`) {
			t.Errorf("no %s chart", title)
		}
	}

	// A restart: a new hypervisor process. Nothing of the last run is current.
	e.db.SetRun(ctx, v.ID, store.Run{State: app.VMRunning, Driver: "qemu", PID: os.Getpid(), Identity: "boot/next"}, nil)
	_, body = e.api("GET", "/v1/vms/"+v.ID+"/metrics", "", "")
	if !strings.Contains(body, `"status":"waiting"`) || !strings.Contains(body, `"cpu_usage_percent":null`) || !strings.Contains(body, `"filesystems":[]`) ||
		!strings.Contains(body, `"time":null`) {
		t.Errorf("right after a restart: %s", body)
	}
	if p := panel(); !strings.Contains(p, "waiting for first sample") || strings.Contains(p, `data-stat="CPU"`) || strings.Contains(p, `data-mount=`) {
		t.Error("the panel shows the last run's figures after a restart")
	}
}

// TestChartSpans: agent samples, then host fallback, then 20 s with none (the manager was
// down), then the agent again; a 1 s interval. The gap is shaded, each stretch has its
// source, the agent's line breaks where the host's starts, and the top of a rate axis is
// a round figure above the largest value.
func TestChartSpans(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	var hist []metrics.Sample
	add := func(from, to int, source string) {
		for i := from; i < to; i++ {
			cpu, rate := float64(i), float64(3000+i)
			hist = append(hist, metrics.Sample{Time: start.Add(time.Duration(i) * time.Second), Source: source, CPUPercent: &cpu, NetRxBps: &rate})
		}
	}
	add(0, 10, metrics.FromAgent)
	add(10, 15, metrics.FromHost)
	add(35, 60, metrics.FromAgent)
	g := grid{hist: hist, start: start, window: 60 * time.Second, maxGap: 3 * time.Second}
	gaps, sources := g.spans()
	if len(gaps) != 1 || gaps[0].X != 140 || gaps[0].W != 210 {
		t.Errorf("gaps: %+v, want one from x=140 (the sample at 14 s) to 350 (the next, at 35 s)", gaps)
	}
	kinds := []string{}
	for _, s := range sources {
		kinds = append(kinds, s.Kind)
	}
	if strings.Join(kinds, " ") != "agent host agent" {
		t.Errorf("sources: %+v", sources)
	}
	agentCPU := func(x metrics.Sample) *float64 {
		if x.Source != metrics.FromAgent {
			return nil
		}
		return x.CPUPercent
	}
	c := g.chart("CPU %", 100, line{"guest (agent)", "stroke-orange-600", false, agentCPU})
	if path := c.Series[0].Line.Path(600, 120); strings.Count(path, "M") != 2 {
		t.Errorf("the agent's line is not broken by the host stretch and the gap: %s", path)
	}
	net := g.chart("Network", 0, line{"in", "stroke-sky-600", false, func(x metrics.Sample) *float64 { return x.NetRxBps }})
	if net.Max != "5.0 KiB/s" {
		t.Errorf("rate axis top %q for a largest value of 3059 B/s, want 5.0 KiB/s", net.Max)
	}
}
