// Package benchagent measures hearth-agent against Debian's prometheus-node-exporter, the tool
// an operator would otherwise put in a guest: both run as real processes on loopback and are
// scraped the same number of times in one run. `make bench-agent` runs it.
package benchagent

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"hearth/internal/testkit/testenv"
)

// scrapeAccept is what a Prometheus server sends: both targets answer in text format.
const scrapeAccept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"

type target struct {
	name   string
	binary string
	url    string
	cmd    *exec.Cmd
}

type result struct {
	binaryBytes  int64
	rssKiB       int64
	anonKiB      int64
	p50, p99     time.Duration
	cpuPerScrape time.Duration
	bodyBytes    int
}

func freeAddr(tb testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func start(tb testing.TB, name, binary string, args ...string) *target {
	tb.Helper()
	addr := freeAddr(tb)
	var cmd *exec.Cmd
	if name == "hearth-agent" {
		cmd = exec.Command(binary, append([]string{"--listen", addr, "--config", os.DevNull}, args...)...)
	} else {
		cmd = exec.Command(binary, append([]string{"--web.listen-address=" + addr}, args...)...)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	t := &target{name: name, binary: binary, url: "http://" + addr + "/metrics", cmd: cmd}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get(t.url); err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			return t
		} else if resp != nil {
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s did not come up at %s", name, t.url)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procCPU is the process's user+system CPU time so far.
func procCPU(tb testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// procMem returns VmRSS and its private part RssAnon, in KiB. The rest of RSS is file
// pages: mostly the executable itself, shared with the page cache.
func procMem(tb testing.TB, pid int) (rss, anon int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = n
		case "RssAnon:":
			anon = n
		}
	}
	return rss, anon
}

func scrape(tb testing.TB, c *http.Client, t *target, n int) result {
	var lat []time.Duration
	body := 0
	cpu0 := procCPU(tb, t.cmd.Process.Pid)
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest("GET", t.url, nil)
		req.Header.Set("Accept", scrapeAccept)
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
		if resp.StatusCode != 200 {
			tb.Fatalf("%s: status %d", t.name, resp.StatusCode)
		}
		body = len(b)
	}
	cpu := procCPU(tb, t.cmd.Process.Pid) - cpu0
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	st, _ := os.Stat(t.binary)
	rss, anon := procMem(tb, t.cmd.Process.Pid)
	return result{binaryBytes: st.Size(), rssKiB: rss, anonKiB: anon, p50: lat[len(lat)/2],
		p99: lat[len(lat)*99/100], cpuPerScrape: cpu / time.Duration(n), bodyBytes: body}
}

func nodeExporter(tb testing.TB) string {
	for _, name := range []string{"prometheus-node-exporter", "node_exporter"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Missing(tb, "node_exporter", "install Debian's prometheus-node-exporter")
	return ""
}

// BenchmarkAgentVsNodeExporter starts both exporters, warms them up, scrapes each
// HEARTH_BENCH_SCRAPES times (default 500) in turn, and reports binary size, RSS after the
// scrapes, median and p99 latency and CPU time per scrape, with the ratios. Run it once:
// go test -run '^$' -bench AgentVsNodeExporter -benchtime 1x ./e2e/benchagent/
func BenchmarkAgentVsNodeExporter(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("linux only")
	}
	ne := nodeExporter(b)
	n := 500
	if s := os.Getenv("HEARTH_BENCH_SCRAPES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	// Measure the binary that ships: make bench-agent passes the one make guest built.
	agentBin := os.Getenv("HEARTH_AGENT_BIN")
	if agentBin == "" {
		agentBin = filepath.Join(b.TempDir(), "hearth-agent")
		build := exec.Command("go", "build", "-trimpath", "-gcflags=all=-l", "-ldflags", "-s -w -X main.version=bench", "-o", agentBin, "hearth/guest/cmd/hearth-agent")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("build agent: %v\n%s", err, out)
		}
	}
	for i := 0; i < b.N; i++ {
		agent := start(b, "hearth-agent", agentBin)
		node := start(b, "node_exporter", ne)
		c := &http.Client{Timeout: 10 * time.Second}
		time.Sleep(1200 * time.Millisecond) // the agent's first full sample
		scrape(b, c, agent, 20)             // warm-up
		scrape(b, c, node, 20)
		ra := scrape(b, c, agent, n)
		rn := scrape(b, c, node, n)
		ratio := func(a, b float64) string {
			if b == 0 {
				return "n/a"
			}
			return fmt.Sprintf("%.3f", a/b)
		}
		fmt.Printf("\nhearth-agent vs node_exporter (%s), %d scrapes each, Prometheus text format:\n", filepath.Base(ne), n)
		fmt.Printf("%-22s %14s %14s %8s %s\n", "", "hearth-agent", "node_exporter", "ratio", "goal")
		fmt.Printf("%-22s %14d %14d %8s %s\n", "binary bytes", ra.binaryBytes, rn.binaryBytes, ratio(float64(ra.binaryBytes), float64(rn.binaryBytes)), "<= 0.5")
		fmt.Printf("%-22s %14d %14d %8s %s\n", "RSS after scrapes KiB", ra.rssKiB, rn.rssKiB, ratio(float64(ra.rssKiB), float64(rn.rssKiB)), "<= 0.333")
		fmt.Printf("%-22s %14d %14d %8s\n", "  of which anon KiB", ra.anonKiB, rn.anonKiB, ratio(float64(ra.anonKiB), float64(rn.anonKiB)))
		fmt.Printf("%-22s %14s %14s %8s %s\n", "median scrape", ra.p50, rn.p50, ratio(float64(ra.p50), float64(rn.p50)), "<= 0.1")
		fmt.Printf("%-22s %14s %14s %8s\n", "p99 scrape", ra.p99, rn.p99, ratio(float64(ra.p99), float64(rn.p99)))
		fmt.Printf("%-22s %14s %14s %8s\n", "CPU time per scrape", ra.cpuPerScrape, rn.cpuPerScrape, ratio(float64(ra.cpuPerScrape), float64(rn.cpuPerScrape)))
		fmt.Printf("%-22s %14d %14d\n", "response bytes", ra.bodyBytes, rn.bodyBytes)
		b.ReportMetric(float64(ra.rssKiB)/float64(rn.rssKiB), "rss-ratio")
		b.ReportMetric(float64(ra.p50)/float64(rn.p50), "median-ratio")
		b.ReportMetric(float64(ra.binaryBytes)/float64(rn.binaryBytes), "binary-ratio")
		b.ReportMetric(float64(ra.p50.Microseconds()), "agent-median-µs")
	}
}
