package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"hearth/app"
	"hearth/app/agent"
)

// TestHostileAgentVersions reproduces a guest hiding its own hearth_vm_agent_up: an agent
// version cut at 64 bytes inside a character (or with invalid bytes or control characters
// of its own) made the series vanish from /metrics. Every VM's series must be there, with a
// valid, bounded label.
func TestHostileAgentVersions(t *testing.T) {
	versions := map[string]string{
		"split":   `"` + strings.Repeat("a", 63) + `é"`,
		"euro":    `"` + strings.Repeat("€", 40) + `"`,
		"invalid": "\"1.0\xff\xfe\"",
		"newline": `"1.0\nhearth_vm_agent_up{vm_id=\"other\"} 0"`,
		"nul":     `"\u0000\u001b[31m"`,
		"empty":   `""`,
		"plain":   `"1.2.3"`,
	}
	var hosts, names []string
	for name := range versions {
		names = append(names, name)
		hosts = append(hosts, "127.0.0."+string(rune('2'+len(hosts))))
	}
	port, ls := listenAll(t, hosts)
	f := &fleet{}
	for i, l := range ls {
		body := `{"cpu_usage_percent": 1, "memory_usage_percent": 5, "agent_version": ` + versions[names[i]] + `}`
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) })}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		f.vms = append(f.vms, &app.VM{ID: names[i], Name: names[i], State: app.VMRunning, GuestIP: hosts[i], VCPUs: 1})
	}
	c := New(f, Options{AgentPort: port, Timeout: time.Second, Interval: time.Second})
	c.Round(context.Background())

	rec := httptest.NewRecorder()
	promhttp.HandlerFor(c.Registry(), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	up := families["hearth_vm_agent_up"]
	seen := map[string]string{}
	if up != nil {
		for _, m := range up.Metric {
			var id, version string
			for _, l := range m.Label {
				switch l.GetName() {
				case "vm_id":
					id = l.GetValue()
				case "agent_version":
					version = l.GetValue()
				}
			}
			if m.GetGauge().GetValue() != 1 {
				t.Errorf("%s: agent_up %v", id, m.GetGauge().GetValue())
			}
			seen[id] = version
		}
	}
	for _, name := range names {
		v, ok := seen[name]
		switch {
		case !ok:
			t.Errorf("%s: hearth_vm_agent_up is missing from /metrics (last error %q)", name, c.LastError(name))
		case !utf8.ValidString(v) || len(v) > agent.MaxVersion || strings.ContainsAny(v, "\n\x00\x1b") || !utf8.ValidString(v):
			t.Errorf("%s: label %q", name, v)
		}
	}
	if seen["plain"] != "1.2.3" || seen["split"] != strings.Repeat("a", 61)+"…" {
		t.Errorf("versions as exported: %q", seen)
	}
	if _, ok := seen["other"]; ok {
		t.Error("a guest's version injected a series of another VM")
	}
}

// TestRoundOverrunReported: agents slower than the interval make the round overrun; the
// collector says so in its gauge, its counter and a log line, and the round still uses at
// most Concurrency workers at a time.
func TestRoundOverrunReported(t *testing.T) {
	hosts := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	port, ls := listenAll(t, hosts)
	var mu sync.Mutex
	inFlight, most := 0, 0
	f := &fleet{}
	for i, l := range ls {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			inFlight++
			most = max(most, inFlight)
			mu.Unlock()
			time.Sleep(60 * time.Millisecond)
			mu.Lock()
			inFlight--
			mu.Unlock()
			w.Write([]byte(`{"cpu_usage_percent": 1, "memory_usage_percent": 5}`))
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		f.vms = append(f.vms, &app.VM{ID: hosts[i], Name: hosts[i], State: app.VMRunning, GuestIP: hosts[i], VCPUs: 1})
	}
	var logged strings.Builder
	c := New(f, Options{AgentPort: port, Timeout: time.Second, Interval: 50 * time.Millisecond, Concurrency: 2,
		Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &logged}, nil))})
	c.Round(context.Background())

	rec := httptest.NewRecorder()
	promhttp.HandlerFor(c.Registry(), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatal(err)
	}
	over := families["hearth_collector_round_overrun_seconds"].GetMetric()[0].GetGauge().GetValue()
	count := families["hearth_collector_round_overruns_total"].GetMetric()[0].GetCounter().GetValue()
	// Four 60 ms answers two at a time: ≥ 120 ms for a 50 ms interval.
	if over < 0.06 || count != 1 {
		t.Errorf("overrun %v s, %v overruns", over, count)
	}
	if !strings.Contains(logged.String(), "overran its interval") {
		t.Errorf("no log line: %q", logged.String())
	}
	if most != 2 {
		t.Errorf("%d polls at once with Concurrency 2", most)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
