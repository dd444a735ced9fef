// Package benchcollector measures the manager polling a large fleet: 1,000 VMs whose
// agents are real hearth-agent handlers on loopback addresses, served by a separate
// process so that the manager's own CPU can be told apart. `make bench-collector` runs it.
package benchcollector

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"hearth/app"
	"hearth/app/auth"
	"hearth/app/metrics"
	"hearth/app/store"
	"hearth/app/vm"
	"hearth/app/web"
	"hearth/guest/collect"
	"hearth/guest/server"
)

const agentToken = "hag_bench_token_0123456789"

// addr is the i-th loopback "guest": 127.0.1.1, 127.0.1.2, …
func addr(i int) string { return fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250) }

// TestMain turns the binary into the agent farm when asked.
func TestMain(m *testing.M) {
	if n := os.Getenv("HEARTH_AGENT_FARM"); n != "" {
		count, _ := strconv.Atoi(n)
		os.Exit(farm(count))
	}
	os.Exit(m.Run())
}

// farm serves one real hearth-agent handler (over one sampler of this machine) on count
// loopback addresses, all on one port; it prints the port and serves until stdin closes.
func farm(count int) int {
	sampler := collect.NewSampler(collect.NewReader(), 5*time.Second, "bench")
	go sampler.Run(context.Background())
	h := server.New(sampler, server.Options{Token: agentToken, Version: "bench", MaxInFlight: 256})
	var port int
	for i := 0; i < count; i++ {
		a := addr(i) + ":0"
		if port != 0 {
			a = addr(i) + ":" + strconv.Itoa(port)
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, "farm:", err)
			return 1
		}
		port = l.Addr().(*net.TCPAddr).Port
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(l)
	}
	fmt.Println(port)
	bufio.NewReader(os.Stdin).ReadString('\n') // until the bench closes stdin
	return 0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssKiB() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return n
		}
	}
	return 0
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// BenchmarkCollector1000: run once (-benchtime 1x). HEARTH_BENCH_VMS and
// HEARTH_BENCH_ROUNDS change the fleet and the number of 5 s rounds.
func BenchmarkCollector1000(b *testing.B) {
	n, rounds := 1000, 6
	if v, _ := strconv.Atoi(os.Getenv("HEARTH_BENCH_VMS")); v > 0 {
		n = v
	}
	if v, _ := strconv.Atoi(os.Getenv("HEARTH_BENCH_ROUNDS")); v > 0 {
		rounds = v
	}
	farmCmd := exec.Command(os.Args[0])
	farmCmd.Env = append(os.Environ(), "HEARTH_AGENT_FARM="+strconv.Itoa(n))
	stdin, _ := farmCmd.StdinPipe()
	stdout, _ := farmCmd.StdoutPipe()
	farmCmd.Stderr = os.Stderr
	if err := farmCmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); farmCmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("agent farm: %v", err)
	}
	port, _ := strconv.Atoi(strings.TrimSpace(line))

	ctx := context.Background()
	db, err := store.OpenSQLite(ctx, b.TempDir()+"/hearth.db")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	rules := vm.Rules{CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, AllowLoopback: true, HostAddrs: func() []netip.Addr { return nil }}
	vms := vm.NewService(db, rules, "")
	for i := 0; i < n; i++ {
		v := &app.VM{ID: fmt.Sprintf("vm%05d", i), Name: fmt.Sprintf("bench-%04d", i), State: app.VMRunning, VCPUs: 1, MemoryMiB: 256,
			MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), GuestIP: addr(i), GuestIPSource: app.SourceAgent,
			GuestIPUpdatedAt: time.Now().UTC(), AgentToken: agentToken}
		if err := db.CreateVM(ctx, v, fmt.Sprintf("h%05d", i), nil); err != nil {
			b.Fatal(err)
		}
	}
	c := metrics.New(vms, metrics.Options{Interval: 5 * time.Second, AgentPort: port, Store: db})

	b.ResetTimer()
	cpu0, wall0 := cpuTime(), time.Now()
	for r := 0; r < rounds; r++ {
		start := time.Now()
		c.Round(ctx)
		if r < rounds-1 {
			time.Sleep(5*time.Second - time.Since(start))
		}
	}
	wall, cpu := time.Since(wall0), cpuTime()-cpu0
	b.StopTimer()
	live := 0
	for i := 0; i < n; i++ {
		if s, ok := c.Latest(&app.VM{ID: fmt.Sprintf("vm%05d", i), State: app.VMRunning}); ok && s.Source == metrics.FromAgent {
			live++
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)

	// The VM list partial with the whole fleet, as the browser polls it.
	au := auth.NewService(db, auth.NewThrottle(5, time.Minute), bcrypt.MinCost)
	au.CreateUser(ctx, "admin", "bench-password", app.Actor{Kind: app.ActorSystem})
	srv := httptest.NewServer(web.New(web.Deps{VMs: vms, Auth: au, Metrics: c, Ping: db.Ping}))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader(url.Values{"name": {"admin"}, "password": {"bench-password"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 303 {
		b.Fatalf("sign in: %v", err)
	}
	var renders []time.Duration
	size := 0
	for i := 0; i < 60; i++ {
		req, _ := http.NewRequest("GET", srv.URL+"/vms/list", nil)
		req.Header.Set("HX-Request", "true")
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		size = 0
		for {
			k, err := resp.Body.Read(buf)
			size += k
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		renders = append(renders, time.Since(t0))
	}
	durs := c.RoundDurations()
	cpuShare := 100 * cpu.Seconds() / wall.Seconds()
	fmt.Printf("\ncollector with %d VMs (real hearth-agent handlers in another process), %d rounds at 5 s:\n", n, rounds)
	fmt.Printf("  agents answering        %d/%d\n", live, n)
	fmt.Printf("  poll round p50 / p99    %v / %v   (goal p99 <= 1 s)\n", pct(durs, 0.5).Round(time.Millisecond), pct(durs, 0.99).Round(time.Millisecond))
	fmt.Printf("  manager CPU             %.1f %% of one core   (goal <= 10 %%)\n", cpuShare)
	fmt.Printf("  manager memory          RSS %d MiB, Go heap in use %d MiB\n", rssKiB()>>10, ms.HeapInuse>>20)
	fmt.Printf("  VM list partial p95     %v for %d VMs, %d KiB   (goal <= 50 ms)\n", pct(renders, 0.95).Round(100*time.Microsecond), n, size>>10)
	b.ReportMetric(pct(durs, 0.99).Seconds()*1000, "round-p99-ms")
	b.ReportMetric(cpuShare, "cpu-%")
	b.ReportMetric(float64(pct(renders, 0.95).Microseconds())/1000, "list-p95-ms")
	if live < n*99/100 {
		b.Errorf("only %d of %d agents answered", live, n)
	}
}
