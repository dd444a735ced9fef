package server

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hearth/guest/api"
	"hearth/guest/collect"
)

const token = "hag_0123456789abcdef"

func newServer(t *testing.T, opts Options) (*httptest.Server, *collect.Sampler) {
	t.Helper()
	s := collect.NewSampler(collect.NewReader(), 500*time.Millisecond, "test")
	opts.Version = "test"
	srv := httptest.NewServer(New(s, opts))
	t.Cleanup(srv.Close)
	return srv, s
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestAuthAndHealth(t *testing.T) {
	srv, s := newServer(t, Options{Token: token})
	if resp, _ := get(t, srv.URL+"/metrics", map[string]string{"Authorization": "Bearer " + token}); resp.StatusCode != 503 {
		t.Errorf("before the first sample: %d, want 503", resp.StatusCode)
	}
	s.Sample()
	for _, auth := range []string{"", "Bearer wrong", "Basic " + token, token, "Bearer " + token + "x"} {
		resp, _ := get(t, srv.URL+"/metrics", map[string]string{"Authorization": auth})
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %q: %d, want 401 with WWW-Authenticate", auth, resp.StatusCode)
		}
	}
	if resp, _ := get(t, srv.URL+"/metrics", map[string]string{"Authorization": "bearer " + token}); resp.StatusCode != 200 {
		t.Errorf("right token: %d", resp.StatusCode)
	}
	resp, body := get(t, srv.URL+"/health", nil)
	var h map[string]any
	json.Unmarshal([]byte(body), &h)
	if resp.StatusCode != 200 || h["status"] != "ok" || h["version"] != "test" || h["uptime_seconds"] == nil || len(h) != 3 {
		t.Errorf("health: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(body, token) {
		t.Error("health reveals the token")
	}
	if resp, _ := get(t, srv.URL+"/nope", nil); resp.StatusCode != 404 {
		t.Errorf("unknown path: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/metrics", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
		t.Errorf("POST /metrics: %v %v", resp.StatusCode, err)
	}
}

// meminfo reads MemTotal and MemAvailable straight from /proc/meminfo, independently of
// procfs, to check the agent against.
func meminfo(t *testing.T) (total, avail float64) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "MemTotal:":
			total = v
		case "MemAvailable:":
			avail = v
		}
	}
	return total, avail
}

// TestLiveNumbers runs the agent over this machine's real /proc: memory% agrees with
// /proc/meminfo, and keeping one core busy for a bounded time makes cpu% rise to at least
// most of one core's share.
func TestLiveNumbers(t *testing.T) {
	srv, s := newServer(t, Options{})
	s.Sample() // baseline

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // one core busy, for at most ~1.5 s
		defer wg.Done()
		deadline := time.Now().Add(1500 * time.Millisecond)
		x := 0
		for !stop.Load() && time.Now().Before(deadline) {
			for i := 0; i < 1e5; i++ {
				x += i
			}
		}
		_ = x
	}()
	time.Sleep(time.Second)
	s.Sample()
	stop.Store(true)
	wg.Wait()

	resp, body := get(t, srv.URL+"/metrics", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var snap api.Snapshot
	if err := json.Unmarshal([]byte(body), &snap); err != nil {
		t.Fatal(err)
	}
	ncpu := runtime.NumCPU()
	floor := 0.6 * 100 / float64(ncpu) // our spinner alone is 100/ncpu percent
	if snap.CPUUsagePercent == nil || *snap.CPUUsagePercent < floor || *snap.CPUUsagePercent > 100 {
		t.Errorf("cpu_usage_percent with one of %d cores busy = %v, want ≥ %.0f", ncpu, snap.CPUUsagePercent, floor)
	}
	total, avail := meminfo(t)
	want := 100 * (total - avail) / total
	if snap.MemUsagePercent == nil || *snap.MemUsagePercent < want-2 || *snap.MemUsagePercent > want+2 {
		t.Errorf("memory_usage_percent = %v, /proc/meminfo says %.2f", snap.MemUsagePercent, want)
	}
	if snap.Memory.TotalBytes != uint64(total)*1024 {
		t.Errorf("memory total %d, /proc/meminfo %v kB", snap.Memory.TotalBytes, total)
	}
	if snap.CPU.Count != ncpu || snap.Hostname == "" || snap.AgentVersion != "test" || snap.IntervalSeconds != 0.5 {
		t.Errorf("cpu count %d (want %d), hostname %q, version %q, interval %v", snap.CPU.Count, ncpu, snap.Hostname, snap.AgentVersion, snap.IntervalSeconds)
	}
	// The seed document's field names are on the wire.
	for _, field := range []string{`"cpu_usage_percent":`, `"memory_usage_percent":`} {
		if !strings.Contains(body, field) {
			t.Errorf("JSON lacks %s", field)
		}
	}
}

func TestPrometheusFormat(t *testing.T) {
	srv, s := newServer(t, Options{})
	s.Sample()
	time.Sleep(100 * time.Millisecond) // let the CPU counters tick
	s.Sample()
	for _, tc := range []struct {
		name   string
		query  string
		accept string
		prom   bool
	}{
		{"default is JSON", "", "", false},
		{"browser", "", "text/html,application/xhtml+xml,*/*;q=0.8", false},
		{"query", "?format=prometheus", "", true},
		{"query json beats accept", "?format=json", "text/plain", false},
		{"prometheus scraper", "", "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2", true},
		{"text/plain", "", "text/plain", true},
		{"json preferred", "", "application/json, text/plain;q=0.5", false},
	} {
		resp, body := get(t, srv.URL+"/metrics"+tc.query, map[string]string{"Accept": tc.accept})
		isProm := strings.Contains(body, "# TYPE hearth_guest_cpu_seconds_total counter")
		if resp.StatusCode != 200 || isProm != tc.prom {
			t.Errorf("%s: status %d, prometheus %v (%s), want %v", tc.name, resp.StatusCode, isProm, resp.Header.Get("Content-Type"), tc.prom)
		}
	}
	_, body := get(t, srv.URL+"/metrics?format=prometheus", nil)
	for _, want := range []string{"hearth_guest_memory_total_bytes ", "hearth_guest_cpu_usage_ratio ", `hearth_guest_load{window="1m"}`,
		"hearth_agent_info{", "# TYPE hearth_guest_memory_usage_ratio gauge"} {
		if !strings.Contains(body, want) {
			t.Errorf("prometheus output lacks %q", want)
		}
	}
}

func TestBoundedConcurrency(t *testing.T) {
	s := collect.NewSampler(collect.NewReader(), time.Second, "test")
	s.Sample()
	block := make(chan struct{})
	h := New(s, Options{MaxInFlight: 1})
	inner := h.(http.HandlerFunc)
	// Occupy the one slot with a request that waits, then see the next one refused.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && r.URL.Query().Get("hold") == "1" {
			inner.ServeHTTP(&holdWriter{ResponseWriter: w, block: block}, r)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer slow.Close()
	go http.Get(slow.URL + "/metrics?hold=1")
	time.Sleep(100 * time.Millisecond)
	resp, _ := get(t, slow.URL+"/health", nil)
	close(block)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("request beyond the limit: %d, want 503 with Retry-After", resp.StatusCode)
	}
}

// holdWriter blocks the first write until block is closed, keeping its request in flight.
type holdWriter struct {
	http.ResponseWriter
	block chan struct{}
}

func (h *holdWriter) WriteHeader(code int) { <-h.block; h.ResponseWriter.WriteHeader(code) }

func FuzzAcceptQ(f *testing.F) {
	f.Add("text/plain;q=0.5, application/json;q=0.4")
	f.Add("*/*;q=")
	f.Fuzz(func(t *testing.T, accept string) {
		text, json := acceptQ(accept)
		if text < 0 || text > 1 || json < 0 || json > 1 {
			t.Fatalf("acceptQ(%q) = %v, %v", accept, text, json)
		}
	})
}

// TestSummaryView: ?view=summary is the manager's part of the same snapshot (the same
// figures, time, page cache and filesystems), without the rest, and much smaller; the
// manager's parser reads both.
func TestSummaryView(t *testing.T) {
	srv, s := newServer(t, Options{})
	s.Sample()
	time.Sleep(300 * time.Millisecond)
	s.Sample()
	_, full := get(t, srv.URL+"/metrics", nil)
	resp, small := get(t, srv.URL+"/metrics?view=summary", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("summary view: %d %s", resp.StatusCode, small)
	}
	var snap api.Snapshot
	var view api.SummaryView
	if err := json.Unmarshal([]byte(full), &snap); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(small), &view); err != nil {
		t.Fatal(err)
	}
	if !view.Time.Equal(snap.Time) || view.AgentVersion != snap.AgentVersion || view.CPUUsagePercent == nil ||
		*view.CPUUsagePercent != *snap.CPUUsagePercent || *view.MemUsagePercent != *snap.MemUsagePercent ||
		len(view.Filesystems) != len(snap.Filesystems) || (view.PageCache == nil) != (snap.PageCache == nil) {
		t.Errorf("the summary view differs from its snapshot:\n%s\n%s", small, full)
	}
	for _, left := range []string{`"network"`, `"disks"`, `"interfaces"`, `"cpu"`, `"hostname"`} {
		if strings.Contains(small, left) {
			t.Errorf("the summary view carries %s", left)
		}
	}
	t.Logf("summary view %d bytes, whole snapshot %d bytes", len(small), len(full))
	if len(small) >= len(full) {
		t.Errorf("the summary view (%d bytes) is not smaller than the snapshot (%d)", len(small), len(full))
	}
}
