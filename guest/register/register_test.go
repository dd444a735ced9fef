package register

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// manager is a stand-in for the manager's guest-ip endpoint that records what it got and
// fails the first `fail` requests.
type manager struct {
	mu   sync.Mutex
	got  []string
	auth []string
	fail int
}

func (m *manager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.URL.Path != "/v1/vms/vm1/guest-ip" || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad request line", 400)
		return
	}
	if m.fail > 0 {
		m.fail--
		w.WriteHeader(500)
		w.Write([]byte(`{"error":{"code":"internal","message":"try later"}}`))
		return
	}
	var b struct{ GuestIP, Source string }
	if err := json.NewDecoder(r.Body).Decode(&struct {
		GuestIP *string `json:"guest_ip"`
		Source  *string `json:"source"`
	}{&b.GuestIP, &b.Source}); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	m.got = append(m.got, b.GuestIP+"/"+b.Source)
	m.auth = append(m.auth, r.Header.Get("Authorization"))
	w.Write([]byte(`{}`))
}

func (m *manager) posts() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRegistersOnStartAndOnChange(t *testing.T) {
	m := &manager{fail: 2}
	srv := httptest.NewServer(m)
	defer srv.Close()
	var mu sync.Mutex
	addr := netip.MustParseAddr("10.0.0.5")
	r := &Registrar{ManagerURL: srv.URL, VMID: "vm1", Token: "hrg_t",
		Addr:       func() (netip.Addr, error) { mu.Lock(); defer mu.Unlock(); return addr, nil },
		CheckEvery: 10 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	// Two failures, then success: the retry loop gets through.
	waitFor(t, "first registration", func() bool { return len(m.posts()) == 1 })
	time.Sleep(50 * time.Millisecond) // several checks with the same address
	if p := m.posts(); len(p) != 1 || p[0] != "10.0.0.5/agent" {
		t.Fatalf("posts = %v, want one registration of 10.0.0.5 as agent", p)
	}
	mu.Lock()
	addr = netip.MustParseAddr("10.0.0.9")
	mu.Unlock()
	waitFor(t, "re-registration", func() bool { return len(m.posts()) == 2 })
	if p := m.posts(); p[1] != "10.0.0.9/agent" || m.auth[1] != "Bearer hrg_t" {
		t.Errorf("posts = %v, auth %v", p, m.auth)
	}
}

func TestPostErrors(t *testing.T) {
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			t.Error("the registration followed a redirect, carrying its token")
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	r := &Registrar{ManagerURL: redirect.URL, VMID: "vm1", Token: "hrg_t"}
	if err := r.Post(context.Background(), netip.MustParseAddr("10.0.0.5")); err == nil {
		t.Error("a redirect counted as success")
	}
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		w.Write([]byte(`{"error":{"code":"invalid","message":"guest_ip 8.8.8.8 is outside the guest networks"}}`))
	}))
	defer refuse.Close()
	r = &Registrar{ManagerURL: refuse.URL, VMID: "vm1", Token: "hrg_t"}
	err := r.Post(context.Background(), netip.MustParseAddr("8.8.8.8"))
	if err == nil || err.Error() != "manager answered 400 Bad Request: guest_ip 8.8.8.8 is outside the guest networks" {
		t.Errorf("error = %v; want the manager's message", err)
	}
}

func TestDefaultRouteInterface(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "net"), 0o755)
	route := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n" +
		"eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
		"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"eth2\t00000000\t010300C0\t0002\t0\t0\t1\t00000000\t0\t0\t0\n" // not up
	os.WriteFile(filepath.Join(dir, "net/route"), []byte(route), 0o644)
	if got, err := DefaultRouteInterface(dir); err != nil || got != "eth0" {
		t.Errorf("DefaultRouteInterface = %q, %v; want eth0 (lowest metric, up)", got, err)
	}
	os.WriteFile(filepath.Join(dir, "net/route"), []byte("Iface\tDestination\n"), 0o644)
	if _, err := DefaultRouteInterface(dir); err == nil {
		t.Error("no default route: want error")
	}
	// On this machine the live lookup finds some global address (or says why not).
	if a, err := DefaultRouteAddr("/proc"); err == nil && !a.IsGlobalUnicast() {
		t.Errorf("DefaultRouteAddr = %s, not global unicast", a)
	}
}
