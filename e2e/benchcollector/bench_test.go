// Package benchcollector measures the manager with a large fleet: the collector polling
// 1,000 and 10,000 VMs whose agents are real hearth-agent handlers on loopback addresses,
// served by a separate process so that the manager's own CPU can be told apart
// (`make bench-collector`), and the VM list's page, partial and API over 10,000 records on
// SQLite and PostgreSQL (`make bench-list`).
package benchcollector

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
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
	"hearth/internal/testkit/storetest"
	"hearth/provision"
)

const agentToken = "hag_bench_token_0123456789"

// addr is the i-th loopback "guest": 127.0.1.1, 127.0.1.2, …
func addr(i int) string { return fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250) }

// TestMain turns the binary into the agent farm when asked. 10,000 agents and the
// manager's connections to them need more descriptors than the usual 1,024 or 20,000.
func TestMain(m *testing.M) {
	raiseFileLimit()
	if n := os.Getenv("HEARTH_AGENT_FARM"); n != "" {
		var from, to, port int
		fmt.Sscanf(n, "%d-%d:%d", &from, &to, &port)
		os.Exit(farm(from, to, port))
	}
	os.Exit(storetest.Main(m))
}

func raiseFileLimit() {
	var l syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	want := uint64(65536)
	if l.Max < want { // root may raise the hard limit; others keep theirs
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) == nil {
			return
		}
		want = l.Max
	}
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: l.Max})
}

// farm serves one real hearth-agent handler (over one sampler of this machine) on the
// loopback addresses addr(from) … addr(to-1), all on one port (0: any, the same for all);
// it prints the port and serves until stdin closes.
func farm(from, to, port int) int {
	sampler := collect.NewSampler(collect.NewReader(), 5*time.Second, "bench")
	go sampler.Run(context.Background())
	h := server.New(sampler, server.Options{Token: agentToken, Version: "bench", MaxInFlight: 256})
	for i := from; i < to; i++ {
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

// dbs are the dialects a bench runs on: HEARTH_BENCH_DB=sqlite|postgres, default both.
func dbs() []string {
	if d := os.Getenv("HEARTH_BENCH_DB"); d != "" {
		return strings.Split(d, ",")
	}
	return []string{"sqlite", "postgres"}
}

func openDB(b *testing.B, dialect string) *store.DB {
	if dialect == "postgres" {
		return storetest.Postgres(b)
	}
	return storetest.SQLite(b)
}

// fleetOf records n VMs bench-00000 …, the first running of them running with an agent at
// addr(i), each with sealed seed secrets as a provisioned VM has.
func fleetOf(b *testing.B, db *store.DB, prov *provision.Provisioner, n, running int) {
	ctx := context.Background()
	for i := 0; i < n; i++ {
		v := &app.VM{ID: fmt.Sprintf("vm%05d", i), Name: fmt.Sprintf("bench-%05d", i), State: app.VMStopped, VCPUs: 1, MemoryMiB: 256,
			MAC: fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16, (i>>8)&0xff, i&0xff)}
		sealed, err := prov.Prepare(v, "hrg_bench_registration_token_0123")
		if err != nil {
			b.Fatal(err)
		}
		v.SeedSecrets, v.AgentToken = sealed, agentToken
		if i < running {
			v.State, v.GuestIP, v.GuestIPSource, v.GuestIPUpdatedAt = app.VMRunning, addr(i), app.SourceAgent, time.Now().UTC()
		}
		if err := db.CreateVM(ctx, v, fmt.Sprintf("h%05d", i), nil); err != nil {
			b.Fatal(err)
		}
	}
}

func provisioner(b *testing.B) *provision.Provisioner {
	dir := b.TempDir()
	key, err := provision.LoadOrCreateManagerKey(dir)
	if err != nil {
		b.Fatal(err)
	}
	seal, err := provision.LoadOrCreateSealKey(dir)
	if err != nil {
		b.Fatal(err)
	}
	return &provision.Provisioner{PublicURL: "http://10.77.0.1:8080", ManagerKey: key, SealKey: seal}
}

// startFarm serves n agents from processes of at most 4,000 each: a listener and the
// manager's connection per agent must fit a process's descriptors (often 20,000 at most).
func startFarm(b *testing.B, n int) (port int, stop func()) {
	var stops []func()
	for from := 0; from < n; from += 4000 {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), fmt.Sprintf("HEARTH_AGENT_FARM=%d-%d:%d", from, min(n, from+4000), port))
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		stops = append(stops, func() { stdin.Close(); cmd.Wait() })
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			b.Fatalf("agent farm: %v", err)
		}
		port, _ = strconv.Atoi(strings.TrimSpace(line))
	}
	return port, func() {
		for _, s := range stops {
			s()
		}
	}
}

// BenchmarkCollector: run once (-benchtime 1x). The cases are 1,000 running VMs; 10,000
// records of which 1,000 run; 10,000 running. HEARTH_BENCH_CASES (e.g. "1000/1000")
// picks some, HEARTH_BENCH_ROUNDS changes the number of 5 s rounds (6), HEARTH_BENCH_DB the
// dialects. Each case prints round p50/p99, the manager's CPU and RSS.
func BenchmarkCollector(b *testing.B) {
	rounds := 6
	if v, _ := strconv.Atoi(os.Getenv("HEARTH_BENCH_ROUNDS")); v > 0 {
		rounds = v
	}
	cases := [][2]int{{1000, 1000}, {10000, 1000}, {10000, 10000}}
	if c := os.Getenv("HEARTH_BENCH_CASES"); c != "" {
		cases = nil
		for _, f := range strings.Split(c, ",") {
			var r, n int
			fmt.Sscanf(f, "%d/%d", &r, &n)
			cases = append(cases, [2]int{r, n})
		}
	}
	for _, dialect := range dbs() {
		for _, cs := range cases {
			b.Run(fmt.Sprintf("%s/%d-records/%d-running", dialect, cs[0], cs[1]), func(b *testing.B) {
				collectorCase(b, dialect, cs[0], cs[1], rounds)
			})
		}
	}
}

func collectorCase(b *testing.B, dialect string, records, n, rounds int) {
	runtime.GC()
	debug.FreeOSMemory()
	port, stop := startFarm(b, n)
	defer stop()
	ctx := context.Background()
	db := openDB(b, dialect)
	fleetOf(b, db, provisioner(b), records, n)
	rules := vm.Rules{CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, AllowLoopback: true} // the host's addresses read as a manager does
	vms := vm.NewService(db, rules, "")
	c := metrics.New(vms, metrics.Options{Interval: 5 * time.Second, AgentPort: port, Store: db})
	runtime.GC()
	rss0 := rssKiB()

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
	rss := rssKiB()
	live := 0
	running, _ := vms.Running(ctx)
	for _, v := range running {
		if s, ok := c.Latest(v); ok && s.Source == metrics.FromAgent {
			live++
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	durs := c.RoundDurations()
	cpuShare := 100 * cpu.Seconds() / wall.Seconds()
	goal := map[int]string{1000: "(goal <= 10 %)", 10000: "(goal <= 25 %)"}[n]
	rssGoal := "(goal <= 250 MiB)"
	if n == 10000 {
		rssGoal = "(goal <= 600 MiB)"
	}
	fmt.Printf("\ncollector, %s, %d VM records of which %d run (real hearth-agent handlers in another process), %d rounds at 5 s:\n", dialect, records, n, rounds)
	fmt.Printf("  agents answering        %d/%d\n", live, n)
	fmt.Printf("  poll round p50 / p99    %v / %v   (goal p99 <= 1 s)\n", pct(durs, 0.5).Round(time.Millisecond), pct(durs, 0.99).Round(time.Millisecond))
	fmt.Printf("  manager CPU             %.1f %% of one core   %s\n", cpuShare, goal)
	fmt.Printf("  manager memory          RSS %d MiB %s (%d MiB before the first round), Go heap in use %d MiB\n", rss>>10, rssGoal, rss0>>10, ms.HeapInuse>>20)
	b.ReportMetric(pct(durs, 0.99).Seconds()*1000, "round-p99-ms")
	b.ReportMetric(cpuShare, "cpu-%")
	b.ReportMetric(float64(rss>>10), "rss-MiB")
	if live < n*99/100 {
		b.Errorf("only %d of %d agents answered", live, n)
	}
}

// BenchmarkList: the VM list with 10,000 records (1,000 running) as a browser polls it and
// as the API pages it, on each dialect; plus what a provisioned VM costs on disk and the
// time to render a seed.
func BenchmarkList(b *testing.B) {
	records := 10000
	if v, _ := strconv.Atoi(os.Getenv("HEARTH_BENCH_RECORDS")); v > 0 {
		records = v
	}
	for _, dialect := range dbs() {
		b.Run(dialect, func(b *testing.B) { listCase(b, dialect, records) })
	}
}

func listCase(b *testing.B, dialect string, records int) {
	ctx := context.Background()
	dataDir := b.TempDir()
	var db *store.DB
	if dialect == "postgres" {
		db = storetest.Postgres(b)
	} else {
		var err error
		if db, err = store.OpenSQLite(ctx, filepath.Join(dataDir, store.SQLiteFile)); err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
	}
	prov := provisioner(b)
	before := dirBytes(dataDir)
	fleetOf(b, db, prov, records, records/10)
	perVM := float64(dirBytes(dataDir)-before) / float64(records)
	rules := vm.Rules{CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, AllowLoopback: true} // the host's addresses read as a manager does
	vms := vm.NewService(db, rules, dataDir).WithSeeder(prov)
	c := metrics.New(vms, metrics.Options{Interval: 5 * time.Second})

	au := auth.NewService(db, auth.NewThrottle(5, time.Minute), bcrypt.MinCost)
	au.CreateUser(ctx, "admin", "bench-password", app.Actor{Kind: app.ActorSystem})
	token, _ := au.CreateAPIToken(ctx, "bench", app.Actor{Kind: app.ActorSystem})
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
	measure := func(path string, hdr map[string]string) (p95 time.Duration, size int) {
		var ds []time.Duration
		for i := 0; i < 60; i++ {
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ds = append(ds, time.Since(t0))
			if resp.StatusCode != 200 {
				b.Fatalf("%s: %d", path, resp.StatusCode)
			}
			size = int(n)
		}
		return pct(ds, 0.95), size
	}
	htmx := map[string]string{"HX-Request": "true"}
	bearer := map[string]string{"Authorization": "Bearer " + token}
	b.ResetTimer()
	partial, partialSize := measure("/vms/list", htmx)
	deep, _ := measure("/vms/list?page=150", htmx)
	search, _ := measure("/vms/list?q=bench-012&state=stopped", htmx)
	byCPU, _ := measure("/vms/list?sort=cpu", htmx)
	page, pageSize := measure("/vms", nil)
	api, apiSize := measure("/v1/vms?limit=50", bearer)
	b.StopTimer()

	// A seed, rendered as a start does: from the record and the embedded agent.
	all, _ := vms.Running(ctx)
	var renders []time.Duration
	var isoSize int64
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		path, done, err := vms.RenderSeed(ctx, all[i].ID)
		if err != nil {
			b.Fatal(err)
		}
		renders = append(renders, time.Since(t0))
		if fi, err := os.Stat(path); err == nil {
			isoSize = fi.Size()
		}
		done()
	}
	fmt.Printf("\nVM list, %s, %d VM records (%d running):\n", dialect, records, records/10)
	fmt.Printf("  list partial p95        %v, %d KiB per poll   (goal <= 20 ms, <= 100 KiB)\n", partial.Round(100*time.Microsecond), partialSize>>10)
	fmt.Printf("  partial, page 150 / search / by CPU  p95 %v / %v / %v\n", deep.Round(100*time.Microsecond), search.Round(100*time.Microsecond), byCPU.Round(100*time.Microsecond))
	fmt.Printf("  whole page p95          %v, %d KiB\n", page.Round(100*time.Microsecond), pageSize>>10)
	fmt.Printf("  API page of 50 p95      %v, %d KiB\n", api.Round(100*time.Microsecond), apiSize>>10)
	fmt.Printf("  seed render p50 / max   %v / %v (%.1f MiB ISO, rendered at start, removed at stop)\n", pct(renders, 0.5).Round(100*time.Microsecond),
		pct(renders, 1).Round(100*time.Microsecond), float64(isoSize)/(1<<20))
	if dialect == "sqlite" {
		fmt.Printf("  data dir per VM         %.0f bytes (its record; no seed until it starts)\n", perVM)
	}
	b.ReportMetric(float64(partial.Microseconds())/1000, "partial-p95-ms")
	b.ReportMetric(float64(partialSize)/1024, "partial-KiB")
	b.ReportMetric(float64(api.Microseconds())/1000, "api-p95-ms")
}

func dirBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
