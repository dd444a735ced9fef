package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/config"
	"hearth/app/metrics"
	"hearth/app/store"
	"hearth/app/vm"
	"hearth/internal/testkit/storetest"
)

// listFleet is 120 VMs, vm-000 … vm-119: every fourth running. Of those, the first five
// have agents (on 127.0.0.21–25) reporting memory 100 − i %; the others are polled from the
// host (this process stands in for their hypervisor); the rest are defined.
func listFleet(t *testing.T, db *store.DB) (*env, *metrics.Collector) {
	t.Helper()
	e := newEnv(t, db)
	cidrs, _ := config.ParseCIDRs("127.0.0.0/8")
	e.vms = vm.NewService(e.db, vm.Rules{CIDRs: cidrs, AllowLoopback: true, HostAddrs: func() []netip.Addr { return nil }}, e.dataDir)
	ctx := context.Background()
	port := 0
	agents := 0
	for i := 0; i < 120; i++ {
		v := &app.VM{ID: fmt.Sprintf("id%03d", (i*53)%120), Name: fmt.Sprintf("vm-%03d", i), State: app.VMDefined, VCPUs: 1, MemoryMiB: 256,
			MAC: "02:00:00:00:00:01"}
		if err := e.db.CreateVM(ctx, v, "h"+v.ID, nil); err != nil {
			t.Fatal(err)
		}
		if i%4 != 0 {
			continue
		}
		e.db.SetRun(ctx, v.ID, store.Run{State: app.VMRunning, Driver: "qemu", PID: os.Getpid()}, nil)
		if agents < 5 {
			host := fmt.Sprintf("127.0.0.%d", 21+agents)
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", host, port))
			if err != nil {
				t.Skipf("listen on %s:%d: %v", host, port, err)
			}
			port = l.Addr().(*net.TCPAddr).Port
			body := fmt.Sprintf(`{"cpu_usage_percent": %d, "memory_usage_percent": %d, "agent_version": "t"}`, 50+i, 100-i)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) })}
			go srv.Serve(l)
			t.Cleanup(func() { srv.Close() })
			e.db.SetGuestIP(ctx, v.ID, host, app.SourceAgent, nil)
			e.db.SetAgentToken(ctx, v.ID, "hag_list_test_token")
			agents++
		}
	}
	c := metrics.New(e.vms, metrics.Options{AgentPort: port, Interval: time.Minute, Timeout: time.Second})
	c.Round(ctx)
	time.Sleep(20 * time.Millisecond)
	c.Round(ctx)
	e.srv.Config.Handler = New(Deps{VMs: e.vms, Auth: e.auth, Metrics: c, Ping: e.db.Ping})
	return e, c
}

var rowRE = regexp.MustCompile(`data-vm="([^"]+)"`)

func rows(page string) []string {
	var out []string
	for _, m := range rowRE.FindAllStringSubmatch(page, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestVMListPages: the page shows 50 rows and links that keep the query; the polled
// partial renders that page alone; search, state tabs, badges and sorts select what they
// say; bad parameters are refused by name.
func TestVMListPages(t *testing.T) {
	e, _ := listFleet(t, nil)
	e.signIn()
	get := func(path string) (int, string) {
		status, _, body := e.do("GET", path, "", nil)
		return status, body
	}
	status, page := get("/vms")
	if got := rows(page); status != 200 || len(got) != 50 || got[0] != "vm-000" || got[49] != "vm-049" {
		t.Fatalf("first page: %d, %d rows %v", status, len(got), got)
	}
	if !strings.Contains(page, "1–50 of 120") || !strings.Contains(page, `href="/vms?page=2"`) || !strings.Contains(page, "page 1 of 3") {
		t.Errorf("first page's pager")
	}
	if !regexp.MustCompile(`data-tab="running"[^>]*>\s*running <span[^>]*>30</span>`).MatchString(page) ||
		!regexp.MustCompile(`data-tab="all"[^>]*>\s*All <span[^>]*>120</span>`).MatchString(page) {
		t.Errorf("state tabs lack their counts")
	}
	_, last := get("/vms?page=3")
	if got := rows(last); len(got) != 20 || got[0] != "vm-100" || strings.Contains(last, `rel="next"`) || !strings.Contains(last, `href="/vms?page=2"`) {
		t.Errorf("last page: %v", got)
	}
	if _, past := get("/vms?page=99"); fmt.Sprint(rows(past)) != fmt.Sprint(rows(last)) {
		t.Errorf("a page past the end does not show the last")
	}
	// The partial: the same page, polling itself with the query.
	_, _, part := e.do("GET", "/vms/list?q=vm-0&page=2&sort=name&order=desc", "", map[string]string{"HX-Request": "true"})
	if got := rows(part); strings.Contains(part, "<html") || len(got) != 50 || got[0] != "vm-049" ||
		!strings.Contains(part, `hx-get="/vms/list?order=desc&amp;page=2&amp;q=vm-0"`) {
		t.Errorf("partial page 2 of vm-0, Z→A: %v\n%.300s", got, part)
	}
	if len(part) > 100<<10 {
		t.Errorf("a page of 50 rows is %d KiB", len(part)>>10)
	}
	for _, tt := range []struct {
		query string
		n     int
		first string
	}{
		{"q=VM-01", 10, "vm-010"},
		{"q=01&state=running", 2, "vm-012"},
		{"state=running", 30, "vm-000"},
		{"badge=live", 5, "vm-000"},
		{"badge=host", 25, "vm-020"},
		{"badge=stopped", 50, "vm-001"}, // 90 over two pages
		{"badge=stopped&state=running", 0, ""},
		{"badge=live&state=defined", 0, ""},
		{"badge=waiting", 0, ""},
		{"q=zz", 0, ""},
		{"sort=memory", 50, "vm-000"},           // agents first, 100 − i %
		{"sort=memory&order=asc", 50, "vm-016"}, // the least memory first, host-fallback VMs after
		{"sort=created", 50, "vm-119"},
		{"sort=created&order=asc", 50, "vm-000"},
		{"sort=cpu&badge=live&order=asc", 5, "vm-000"},
		{"sort=cpu&badge=live", 5, "vm-016"},
	} {
		status, page := get("/vms?" + tt.query)
		got := rows(page)
		if status != 200 || len(got) != tt.n || (tt.n > 0 && got[0] != tt.first) {
			t.Errorf("%s: %d, %d rows, first %v", tt.query, status, len(got), got)
		}
		if tt.n == 0 && !strings.Contains(page, `data-testid="no-match"`) {
			t.Errorf("%s: an empty result does not say no VM matches", tt.query)
		}
	}
	_, mem := get("/vms?sort=memory")
	if got := rows(mem); fmt.Sprint(got[:6]) != "[vm-000 vm-004 vm-008 vm-012 vm-016 vm-020]" || got[30] != "vm-001" {
		t.Errorf("by memory: agents by figure, host fallback by name, then the VMs not running: %v", got)
	}
	_, cpu := get("/vms?sort=cpu&page=2")
	if got := rows(cpu); got[0] != "vm-027" { // 30 running, then 20 others on page 1: vm-001 … vm-026
		t.Errorf("by CPU, page 2 starts with %v", got[0])
	}
	for _, bad := range []string{"state=frozen", "badge=green", "sort=size", "order=up", "page=0", "page=-1", "page=x", "q=" + strings.Repeat("a", 64)} {
		field := strings.SplitN(bad, "=", 2)[0]
		if status, page := get("/vms?" + bad); status != 400 || !strings.Contains(page, "must be") {
			t.Errorf("%s: %d, want 400 naming %s", bad, status, field)
		}
	}
}

// TestVMListAPICursor walks GET /v1/vms page by page in every order and filter, on both
// dialects: each VM once, in order, as many as total says; cursors are checked.
func TestVMListAPICursor(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		e, _ := listFleet(t, db)
		type page struct {
			VMs []struct {
				Name string `json:"name"`
			} `json:"vms"`
			Next  *string `json:"next_cursor"`
			Total int     `json:"total"`
		}
		walk := func(query string) ([]string, int) {
			var names []string
			total, cur := -1, ""
			for i := 0; i < 200; i++ {
				path := "/v1/vms?limit=7&" + query
				if cur != "" {
					path += "&cursor=" + url.QueryEscape(cur)
				}
				status, body := e.api("GET", path, "", "")
				var p page
				if status != 200 || json.Unmarshal([]byte(body), &p) != nil {
					t.Fatalf("%s: %d %s", path, status, body)
				}
				total = p.Total
				for _, v := range p.VMs {
					names = append(names, v.Name)
				}
				if p.Next == nil {
					return names, total
				}
				cur = *p.Next
			}
			t.Fatalf("%s: paging does not end", query)
			return nil, 0
		}
		for _, q := range []string{"", "sort=name&order=desc", "sort=created", "sort=memory", "sort=cpu&order=asc", "badge=host", "badge=stopped&q=vm-1", "state=running&sort=memory"} {
			names, total := walk(q)
			seen := map[string]bool{}
			for _, n := range names {
				if seen[n] {
					t.Errorf("%q: %s twice", q, n)
				}
				seen[n] = true
			}
			if len(names) != total || total == 0 {
				t.Errorf("%q: %d VMs over the pages, total says %d", q, len(names), total)
			}
		}
		if names, _ := walk(""); names[0] != "vm-000" || names[119] != "vm-119" {
			t.Errorf("by name: %v … %v", names[0], names[len(names)-1])
		}
		// A cursor continues its own query only; other bad input is refused by name.
		_, body := e.api("GET", "/v1/vms?limit=3", "", "")
		var p page
		json.Unmarshal([]byte(body), &p)
		for _, tt := range []struct{ query, field string }{
			{"limit=0", "limit"}, {"limit=501", "limit"}, {"limit=ten", "limit"},
			{"cursor=%25%25%25", "cursor"}, {"cursor=bm90IGEgY3Vyc29y", "cursor"},
			{"sort=created&cursor=" + url.QueryEscape(*p.Next), "cursor"},
			{"state=frozen", "state"}, {"badge=maybe", "badge"}, {"sort=uptime", "sort"}, {"order=sideways", "order"},
		} {
			status, body := e.api("GET", "/v1/vms?"+tt.query, "", "")
			if status != 400 || !strings.Contains(body, `"`+tt.field+`":`) {
				t.Errorf("%s: %d %.300s", tt.query, status, body)
			}
		}
	})
}
