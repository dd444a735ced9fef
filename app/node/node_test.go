package node_test

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/node"
	"hearth/app/store"
	"hearth/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// TestPlace (PostgreSQL): the up node with the most free memory that fits; a named node
// must be up and have the room; a down node is never chosen; the errors name the nodes
// and what each has free. A node with another cluster secret is refused.
func TestPlace(t *testing.T) {
	db := storetest.Postgres(t)
	ctx := context.Background()
	reg := func(name string, mem int, beat time.Duration) *node.Service {
		s := &node.Service{DB: db, Self: app.Node{Name: name, URL: "http://" + name, MemoryMiB: mem, Interval: beat}, Secret: strings.Repeat("s", 32)}
		if err := s.Register(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := reg("a", 4096, time.Second)
	reg("b", 8192, time.Second)
	reg("c", 65536, 100*time.Millisecond) // the most memory, but it stops beating
	v := &app.VM{ID: "v1", Name: "big", State: app.VMDefined, VCPUs: 1, MemoryMiB: 6000, MAC: "02:00:00:00:00:01", Node: "b"}
	if err := db.CreateVM(ctx, v, "h", nil); err != nil {
		t.Fatal(err)
	}
	db.SetRun(ctx, "v1", store.Run{State: app.VMRunning, PID: 1}, nil) // b: 2192 MiB free
	time.Sleep(400 * time.Millisecond)                                 // c is down
	for _, tt := range []struct {
		want string
		mem  int
		got  string
		err  string
	}{
		{"", 1024, "a", ""},
		{"", 3000, "a", ""},
		{"", 5000, "", "no up node has 5000 MiB free"},
		{"b", 2000, "b", ""},
		{"b", 3000, "", "node b has 2192 MiB free"},
		{"c", 10, "", "node c is down"},
		{"z", 10, "", `no node named "z"`},
	} {
		got, err := a.Place(ctx, tt.want, tt.mem, "")
		if got != tt.got || (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("Place(%q, %d) = %q, %v; want %q, %q", tt.want, tt.mem, got, err, tt.got, tt.err)
		}
		if err != nil && tt.want == "" && !strings.Contains(err.Error(), "c (down") {
			t.Errorf("the error does not name the nodes: %v", err)
		}
	}
	// Images are per node: a VM made from one goes to a node that has it ready, even with
	// less memory free; the refusal names them; no node with it: this node (whose create
	// then says so).
	for _, im := range []*app.Image{{Name: "deb", Node: "b", State: app.ImageReady, Source: app.ImageImported},
		{Name: "deb", Node: "c", State: app.ImageReady, Source: app.ImageImported},
		{Name: "deb", Node: "a", State: app.ImageBuilding, Source: app.ImageImported}} {
		if err := db.CreateImage(ctx, im, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := a.Place(ctx, "", 1024, "deb"); got != "b" || err != nil {
		t.Errorf("Place with image deb (ready on b and the down c, building on a) = %q, %v; want b", got, err)
	}
	if _, err := a.Place(ctx, "", 3000, "deb"); err == nil || !strings.Contains(err.Error(), "a (without image deb)") {
		t.Errorf("Place with image deb, too big for b: %v", err)
	}
	if got, err := a.Place(ctx, "", 1024, "nowhere"); got != "a" || err != nil {
		t.Errorf("Place with an image no node has = %q, %v; want this node", got, err)
	}
	if err := db.CreateImage(ctx, &app.Image{Name: "deb", Node: "b", State: app.ImageReady, Source: app.ImageImported}, nil); app.ErrorCode(err) != app.ECONFLICT {
		t.Errorf("a second image deb on b: %v", err)
	}
	other := &node.Service{DB: db, Self: app.Node{Name: "d", URL: "http://d", Interval: time.Second}, Secret: strings.Repeat("x", 32)}
	if err := other.Register(ctx); app.ErrorCode(err) != app.EFORBIDDEN {
		t.Errorf("a node with another secret: %v", err)
	}
	if !a.Authorized(strings.Repeat("s", 32)) || a.Authorized(strings.Repeat("x", 32)) || a.Authorized("") {
		t.Error("Authorized")
	}
}

// TestPeers: a node knows the other nodes' addresses from their URLs (names resolved),
// not its own; one that joins later is known after the next heartbeat.
func TestPeers(t *testing.T) {
	db := storetest.Postgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &node.Service{DB: db, Self: app.Node{Name: "a", URL: "http://10.9.0.1:8080", Interval: 50 * time.Millisecond}}
	if err := a.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if len(a.Peers()) != 0 {
		t.Errorf("alone, a has peers %v", a.Peers())
	}
	go a.Run(ctx)
	b := &node.Service{DB: db, Self: app.Node{Name: "b", URL: "http://[fd00::b]:8080", Interval: time.Second}}
	c := &node.Service{DB: db, Self: app.Node{Name: "c", URL: "http://localhost:8080", Interval: time.Second}}
	for _, n := range []*node.Service{b, c} {
		if err := n.Register(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if p := b.Peers(); p[netip.MustParseAddr("10.9.0.1")] != "a" || len(p) != 1 { // c registers after it
		t.Errorf("b's peers at its start: %v", p)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.Peers()[netip.MustParseAddr("fd00::b")] != "b" || a.Peers()[netip.MustParseAddr("127.0.0.1")] != "c" {
		if time.Now().After(deadline) {
			t.Fatalf("a's peers after heartbeats: %v", a.Peers())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, self := a.Peers()[netip.MustParseAddr("10.9.0.1")]; self {
		t.Error("a counts its own address among its peers")
	}
}
