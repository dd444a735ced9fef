package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/hypervisor"
	"hearth/app/store"
	"hearth/app/vm"
	"hearth/guest/collect"
	"hearth/guest/server"
	"hearth/internal/testkit/storetest"
)

// fleet is a VMs source of the test's making: the "guests" are listeners on loopback
// addresses (127.0.0.x), which rules with AllowLoopback admit.
type fleet struct {
	vms []*app.VM
}

func (f *fleet) Running(context.Context) ([]*app.VM, error) { return f.vms, nil }
func (f *fleet) Machine(string) hypervisor.Machine          { return nil }
func (f *fleet) CheckGuestIP(raw string) (netip.Addr, error) {
	return vm.Rules{CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, AllowLoopback: true,
		HostAddrs: func() []netip.Addr { return nil }}.Check(raw)
}

// listenAll listens on the same port on several loopback addresses.
func listenAll(t *testing.T, hosts []string) (int, []net.Listener) {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		l0, err := net.Listen("tcp", hosts[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l0.Addr().(*net.TCPAddr).Port
		ls := []net.Listener{l0}
		ok := true
		for _, h := range hosts[1:] {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", h, port))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		if ok {
			return port, ls
		}
		for _, l := range ls {
			l.Close()
		}
	}
	t.Fatal("no common free port")
	return 0, nil
}

// TestFaultyAgents: one real agent among agents that hang, answer garbage, NaN, a number
// out of range, a huge body, or die mid-answer. A round still ends within the timeout, the
// real agent's numbers arrive, and each faulty one is refused with its reason.
func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

func TestFaultyAgents(t *testing.T) {
	hosts := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"}
	port, ls := listenAll(t, hosts)
	sampler := collect.NewSampler(collect.NewReader(), time.Second, "test")
	sampler.Sample()
	time.Sleep(50 * time.Millisecond)
	sampler.Sample()
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	handlers := []http.Handler{
		server.New(sampler, server.Options{Token: "hag_good_token_0123456789", Version: "test"}),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }), // hangs
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>not json")) }),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"cpu_usage_percent": NaN, "memory_usage_percent": 5}`))
		}),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"cpu_usage_percent": 250, "memory_usage_percent": 5}`))
		}),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"cpu_usage_percent": 1, "memory_usage_percent": 5, "pad": "`))
			chunk := []byte(strings.Repeat("x", 64<<10))
			for i := 0; i < 64; i++ { // 4 MiB, past the cap
				w.Write(chunk)
			}
		}),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { // dies mid-answer
			conn, buf, _ := w.(http.Hijacker).Hijack()
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"cpu_usage_percent\": 1")
			buf.Flush()
			conn.Close()
		}),
	}
	names := []string{"good", "hangs", "garbage", "nan", "range", "huge", "dies"}
	f := &fleet{}
	for i, l := range ls {
		srv := &http.Server{Handler: handlers[i]}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		f.vms = append(f.vms, &app.VM{ID: names[i], Name: names[i], State: app.VMRunning, GuestIP: hosts[i], VCPUs: 1,
			AgentToken: "hag_good_token_0123456789"})
	}
	c := New(f, Options{AgentPort: port, Timeout: 500 * time.Millisecond, Interval: time.Second})
	start := time.Now()
	c.Round(context.Background())
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a round took %v: a faulty agent held up the others", d)
	}
	s, ok := c.Latest(f.vms[0])
	if !ok || s.Source != FromAgent || s.MemPercent == nil || s.CPUPercent == nil || s.AgentVersion != "test" {
		t.Fatalf("good agent: %+v (%v) — %s", s, ok, c.LastError("good"))
	}
	if st := c.StatusOf(f.vms[0], time.Now()); st.State != StatusLive || st.Source != FromAgent {
		t.Errorf("good agent's badge: %+v", st)
	}
	why := map[string]string{"hangs": "deadline exceeded|Timeout", "garbage": "not valid JSON", "nan": "not valid JSON",
		"range": "not a percentage", "huge": "larger than", "dies": "EOF"}
	for i, name := range names[1:] {
		want := why[name]
		if _, ok := c.Latest(f.vms[i+1]); ok {
			t.Errorf("%s: a sample was kept", name)
		}
		got := c.LastError(name)
		matched := false
		for _, w := range strings.Split(want, "|") {
			matched = matched || strings.Contains(got, w)
		}
		if !matched {
			t.Errorf("%s: reason %q, want %q", name, got, want)
		}
	}
	// A second round is just as quick: nothing piles up behind the hanging agent.
	start = time.Now()
	c.Round(context.Background())
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second round took %v", d)
	}
}

// TestHostFallback: a running VM whose agent does not answer is measured from the host:
// its hypervisor process's CPU share and RSS.
// TestRestoredGuestGetsANewConnection: a guest restored from a snapshot knows none of the
// connections made to it since, so a kept one only times out. Here the "guest" hangs on
// every connection accepted before its restore. After the restore the VM is a new run,
// whether the collector saw it in between (recorded stopped while it was restored, its
// state let go), or saw it paused first, or not: either way the first poll of its agent
// after it is on a new connection, and a connection to another guest is kept.
func TestRestoredGuestGetsANewConnection(t *testing.T) {
	for _, between := range []string{"seen stopped", "not seen", "seen paused"} {
		t.Run(between, func(t *testing.T) {
			port, ls := listenAll(t, []string{"127.0.0.2", "127.0.0.3"})
			sampler := collect.NewSampler(collect.NewReader(), time.Second, "test")
			sampler.Sample()
			agentH := server.New(sampler, server.Options{Token: "hag_good_token_0123456789", Version: "test"})
			var mu sync.Mutex
			restoredAt := -1 // connections numbered below it hang
			conns := map[string]int{}
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			for i, l := range ls {
				n := 0
				srv := &http.Server{
					ConnContext: func(ctx context.Context, c net.Conn) context.Context {
						mu.Lock()
						defer mu.Unlock()
						n++
						conns[l.Addr().String()]++
						return context.WithValue(ctx, connNo{}, n)
					},
					Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						mu.Lock()
						stale := i == 0 && r.Context().Value(connNo{}).(int) < restoredAt
						mu.Unlock()
						if stale {
							select {
							case <-release:
							case <-r.Context().Done():
							}
							return
						}
						agentH.ServeHTTP(w, r)
					}),
				}
				go srv.Serve(l)
				t.Cleanup(func() { srv.Close() })
			}
			restored := &app.VM{ID: "restored", State: app.VMRunning, GuestIP: "127.0.0.2", VCPUs: 1, PID: 100, PIDIdentity: "boot/1",
				AgentToken: "hag_good_token_0123456789"}
			other := &app.VM{ID: "other", State: app.VMRunning, GuestIP: "127.0.0.3", VCPUs: 1, PID: 200, PIDIdentity: "boot/2",
				AgentToken: "hag_good_token_0123456789"}
			f := &fleet{vms: []*app.VM{restored, other}}
			c := New(f, Options{AgentPort: port, Timeout: 500 * time.Millisecond, Interval: time.Second})
			c.Round(context.Background())
			if s, ok := c.Latest(restored); !ok || s.Source != FromAgent {
				t.Fatalf("before the restore: %+v (%v) %s", s, ok, c.LastError("restored"))
			}
			if between == "seen stopped" {
				f.vms = []*app.VM{other}
				c.Round(context.Background())
			}
			mu.Lock()
			restoredAt = 2 // the one connection made so far is the snapshot's
			mu.Unlock()
			next := *restored
			next.PID, next.PIDIdentity = 101, "boot/3"
			if between == "seen paused" { // restored paused, then resumed
				next.State = app.VMPaused
				f.vms = []*app.VM{&next, other}
				c.Round(context.Background())
				next.State = app.VMRunning
			}
			f.vms = []*app.VM{&next, other}
			c.Round(context.Background())
			if s, ok := c.Latest(&next); !ok || s.Source != FromAgent {
				t.Errorf("first poll after the restore: %+v (%v): %s", s, ok, c.LastError("restored"))
			}
			mu.Lock()
			defer mu.Unlock()
			if got := conns[ls[0].Addr().String()]; got != 2 {
				t.Errorf("connections to the restored guest: %d, want 2 (one per run)", got)
			}
			if got := conns[ls[1].Addr().String()]; got != 1 {
				t.Errorf("connections to the other guest: %d, want 1 (kept throughout)", got)
			}
		})
	}
}

type connNo struct{}

func TestHostFallback(t *testing.T) {
	f := &fleet{vms: []*app.VM{{ID: "v1", Name: "v1", State: app.VMRunning, VCPUs: 1, PID: os.Getpid()}}}
	c := New(f, Options{Interval: time.Second})
	c.Round(context.Background())
	if st := c.StatusOf(f.vms[0], time.Now()); st.State != StatusHost || !strings.Contains(st.Why, "no guest IP") {
		t.Errorf("badge: %+v", st)
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) { // use some CPU in this process
	}
	c.Round(context.Background())
	s, _ := c.Latest(f.vms[0])
	if s.Source != FromHost || s.CPUPercent == nil || *s.CPUPercent <= 0 || s.HostRSSBytes == 0 || s.MemPercent != nil {
		t.Errorf("host sample: %+v cpu %v", s, s.CPUPercent)
	}
	// Stopped VMs say so; stale samples are not shown as current.
	if st := c.StatusOf(&app.VM{ID: "v1", State: app.VMStopped}, time.Now()); st.State != StatusStopped {
		t.Errorf("stopped: %+v", st)
	}
	if st := c.StatusOf(f.vms[0], time.Now().Add(10*time.Second)); st.State != StatusStale {
		t.Errorf("10 s later with a 1 s interval: %+v", st)
	}
	if st := c.StatusOf(&app.VM{ID: "new", State: app.VMRunning}, time.Now()); st.State != StatusWaiting {
		t.Errorf("no sample yet: %+v", st)
	}
}

func TestRingKeepsTheNewest(t *testing.T) {
	r := newRing(3)
	base := time.Unix(1000, 0)
	for i := 0; i < 5; i++ {
		r.add(Sample{Time: base.Add(time.Duration(i) * time.Second)})
	}
	got := r.since(base)
	if len(got) != 3 || !got[0].Time.Equal(base.Add(2*time.Second)) || !got[2].Time.Equal(base.Add(4*time.Second)) {
		t.Errorf("ring: %v", got)
	}
	if got := r.since(base.Add(4 * time.Second)); len(got) != 1 {
		t.Errorf("since the last: %v", got)
	}
}

// TestRingGrowsWithUse: a ring holds what was taken, not its limit up front, and packing
// keeps every value (to float32) and every "no value".
func TestRingGrowsWithUse(t *testing.T) {
	r := newRing(720)
	if n, c := r.size(); n != 0 || c != 0 {
		t.Fatalf("a new ring holds %d, room for %d: memory before any sample", n, c)
	}
	base := time.Unix(1000, 0).UTC()
	cpu, rx, pf := 61.25, 1704.5, 3.0
	for i := 0; i < 20; i++ {
		s := Sample{Time: base.Add(time.Duration(i) * 5 * time.Second), Source: FromAgent, CPUPercent: &cpu, NetRxBps: &rx}
		if i%2 == 1 {
			s = Sample{Time: s.Time, Source: FromHost, HostRSSBytes: 300 << 20, MajorFaultsPS: &pf}
		}
		r.add(s)
	}
	if n, c := r.size(); n != 20 || c > 40 {
		t.Errorf("20 samples: held %d, room for %d", n, c)
	}
	got := r.since(base)
	if len(got) != 20 {
		t.Fatalf("since: %d samples", len(got))
	}
	a, h := got[0], got[1]
	if a.Source != FromAgent || a.CPUPercent == nil || *a.CPUPercent != cpu || *a.NetRxBps != rx || a.MemPercent != nil ||
		a.HostRSSBytes != 0 || a.MajorFaultsPS != nil || !a.Time.Equal(base) {
		t.Errorf("agent sample after packing: %+v", a)
	}
	if h.Source != FromHost || h.CPUPercent != nil || h.HostRSSBytes != 300<<20 || h.MajorFaultsPS == nil || *h.MajorFaultsPS != pf {
		t.Errorf("host sample after packing: %+v", h)
	}
	if s, ok := r.newest(); !ok || !s.Time.Equal(base.Add(95*time.Second)) {
		t.Errorf("newest: %+v", s)
	}
	for i := 20; i < 1000; i++ {
		r.add(Sample{Time: base.Add(time.Duration(i) * 5 * time.Second), Source: FromHost})
	}
	if n, c := r.size(); n != 720 || c != 720 {
		t.Errorf("past its limit: held %d, room for %d", n, c)
	}
	if got := r.since(base); len(got) != 720 || !got[0].Time.Equal(base.Add(280*5*time.Second)) {
		t.Errorf("the newest 720: %d, first %v", len(got), got[0].Time)
	}
}

// TestHistoryReleasedOnStop: a VM that stops or is deleted gives its history back at the
// next round.
func TestHistoryReleasedOnStop(t *testing.T) {
	f := &fleet{vms: []*app.VM{{ID: "a", Name: "a", State: app.VMRunning, VCPUs: 1, PID: os.Getpid()},
		{ID: "b", Name: "b", State: app.VMRunning, VCPUs: 1, PID: os.Getpid()}}}
	c := New(f, Options{Interval: time.Second})
	c.Round(context.Background())
	if len(c.History("a", time.Time{})) != 1 || len(c.History("b", time.Time{})) != 1 {
		t.Fatal("no history after a round")
	}
	f.vms = []*app.VM{{ID: "a", Name: "a", State: app.VMStopped}}
	c.Round(context.Background())
	if h := c.History("a", time.Time{}); h != nil {
		t.Errorf("stopped VM still holds %d samples", len(h))
	}
	if h := c.History("b", time.Time{}); h != nil {
		t.Errorf("deleted VM still holds %d samples", len(h))
	}
	c.mu.Lock()
	n := len(c.state)
	c.mu.Unlock()
	if n != 0 {
		t.Errorf("%d VM states kept", n)
	}
}

// TestPersistence: each round's samples land in the database, on both dialects.
func TestPersistence(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		f := &fleet{vms: []*app.VM{{ID: "p1", Name: "p1", State: app.VMRunning, VCPUs: 1, PID: os.Getpid()}}}
		c := New(f, Options{Interval: time.Second, Store: db})
		c.Round(context.Background())
		time.Sleep(20 * time.Millisecond)
		c.Round(context.Background())
		got, err := c.Persisted(context.Background(), "p1", time.Now().Add(-time.Minute))
		if err != nil || len(got) != 2 || got[1].Source != FromHost || got[1].HostRSSBytes == 0 {
			t.Fatalf("persisted: %+v %v", got, err)
		}
	})
}
