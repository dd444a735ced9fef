package agent

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"hearth/guest/api"
	"hearth/guest/collect"
	"hearth/guest/server"
)

func FuzzParseMetrics(f *testing.F) {
	f.Add([]byte(`{"cpu_usage_percent": 12.5, "memory_usage_percent": 40, "agent_version": "1"}`))
	f.Add([]byte(`{"cpu_usage_percent": -1}`))
	f.Add([]byte(`{"memory_usage_percent": 1e308}`))
	f.Add([]byte(`{"memory_usage_percent": 5, "page_cache": {"dirtied_bytes": 4096}, "filesystems": [{"mountpoint": "/", "size_bytes": 10, "used_bytes": 4}]}`))
	f.Add([]byte(`{"memory_usage_percent": 5, "page_cache": {"dirtied_bytes": -1}, "filesystems": [{"mountpoint": "\u001b[31m/", "size_bytes": 1, "used_bytes": 4}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseMetrics(b)
		if err != nil {
			return
		}
		for _, p := range []*float64{r.CPUUsagePercent, r.MemUsagePercent} {
			if p != nil && (*p < 0 || *p > 100 || *p != *p) {
				t.Fatalf("accepted %v", *p)
			}
		}
		if r.MemUsagePercent == nil || len(r.AgentVersion) > MaxVersion || len(r.Filesystems) > MaxFilesystems {
			t.Fatalf("accepted %+v", r)
		}
		for _, fs := range r.Filesystems {
			if fs.UsedBytes > fs.SizeBytes || fs.Mountpoint == "" || len(fs.Mountpoint) > MaxName || strings.ContainsAny(fs.Mountpoint+fs.Device+fs.FSType, "\x1b\n") {
				t.Fatalf("accepted filesystem %+v", fs)
			}
		}
	})
}

// TestHealthAndGuard: /health of a real agent handler is read; an agent that redirects
// elsewhere, or answers garbage, is refused.
func TestHealthAndGuard(t *testing.T) {
	sampler := collect.NewSampler(collect.NewReader(), time.Second, "t")
	good := server.New(sampler, server.Options{Version: "1.2.3"})
	bad := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == api.HealthPath {
			http.Redirect(w, r, "http://127.0.0.9:1/health", http.StatusFound)
		}
	})
	for _, c := range []struct {
		h       http.Handler
		want    string
		wantErr string
	}{{good, "1.2.3", ""}, {bad, "", "redirect"}, {http.NotFoundHandler(), "", "404"}} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: c.h}
		go srv.Serve(l)
		defer srv.Close()
		cl := New(Options{Port: l.Addr().(*net.TCPAddr).Port, Timeout: time.Second})
		v, err := cl.Health(context.Background(), netip.MustParseAddr("127.0.0.1"))
		if v != c.want || (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("Health = %q, %v; want %q, error with %q", v, err, c.want, c.wantErr)
		}
	}
}

// TestParseMetricsRefusals: what a hostile or broken guest may send about its I/O and
// filesystems is refused with a reason, or bounded and cleaned.
func TestParseMetricsRefusals(t *testing.T) {
	for body, want := range map[string]string{
		`{"memory_usage_percent": 5, "page_cache": {"dirtied_bytes": -1}}`:                                       "not valid JSON",
		`{"memory_usage_percent": 5, "page_cache": {"dirtied_bytes": 1.5}}`:                                      "not valid JSON",
		`{"memory_usage_percent": 5, "filesystems": [{"mountpoint": "/", "size_bytes": 10, "used_bytes": 11}]}`:  "used 11",
		`{"memory_usage_percent": 5, "filesystems": [{"mountpoint": "/", "size_bytes": 10, "avail_bytes": 11}]}`: "available 11",
		`{"memory_usage_percent": 5, "filesystems": [{"mountpoint": "", "size_bytes": 10}]}`:                     "filesystem",
		`{"memory_usage_percent": 5, "filesystems": {"mountpoint": "/"}}`:                                        "not valid JSON",
	} {
		if r, err := ParseMetrics([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %+v, %v; want an error with %q", body, r, err, want)
		}
	}
	many := `{"memory_usage_percent": 5, "filesystems": [` + strings.TrimSuffix(strings.Repeat(`{"mountpoint": "/m\u001b[2J", "size_bytes": 10, "used_bytes": 1},`, 100), ",") + `]}`
	r, err := ParseMetrics([]byte(many))
	if err != nil || len(r.Filesystems) != MaxFilesystems || r.Filesystems[0].Mountpoint != "/m[2J" {
		t.Errorf("100 filesystems with escapes: %d kept, first %q, %v", len(r.Filesystems), r.Filesystems[0].Mountpoint, err)
	}
}

// TestMetricsAsksForTheSummary: the manager asks for the summary view and reads it; an
// agent from before the view (which answers the whole snapshot whatever the query) is read
// the same way.
func TestMetricsAsksForTheSummary(t *testing.T) {
	sampler := collect.NewSampler(collect.NewReader(), time.Second, "t")
	sampler.Sample()
	time.Sleep(200 * time.Millisecond)
	sampler.Sample()
	var asked string
	current := server.New(sampler, server.Options{Version: "2.0"})
	older := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { // ignores ?view
		r.URL.RawQuery = ""
		current.ServeHTTP(w, r)
	})
	for name, h := range map[string]http.Handler{"current": current, "older": older} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			asked = r.URL.RequestURI()
			h.ServeHTTP(w, r)
		})}
		go srv.Serve(l)
		defer srv.Close()
		cl := New(Options{Port: l.Addr().(*net.TCPAddr).Port, Timeout: time.Second})
		r, err := cl.Metrics(context.Background(), netip.MustParseAddr("127.0.0.1"), "")
		if err != nil || r.CPUUsagePercent == nil || r.MemUsagePercent == nil || r.AgentVersion != "t" || r.Time.IsZero() {
			t.Errorf("%s agent: %+v, %v", name, r, err)
		}
		if asked != "/metrics?view=summary" {
			t.Errorf("the manager asked %s of the %s agent", asked, name)
		}
	}
}
