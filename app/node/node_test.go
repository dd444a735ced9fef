package node_test

import (
	"context"
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
		got, err := a.Place(ctx, tt.want, tt.mem)
		if got != tt.got || (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("Place(%q, %d) = %q, %v; want %q, %q", tt.want, tt.mem, got, err, tt.got, tt.err)
		}
		if err != nil && tt.want == "" && !strings.Contains(err.Error(), "c (down") {
			t.Errorf("the error does not name the nodes: %v", err)
		}
	}
	other := &node.Service{DB: db, Self: app.Node{Name: "d", URL: "http://d", Interval: time.Second}, Secret: strings.Repeat("x", 32)}
	if err := other.Register(ctx); app.ErrorCode(err) != app.EFORBIDDEN {
		t.Errorf("a node with another secret: %v", err)
	}
	if !a.Authorized(strings.Repeat("s", 32)) || a.Authorized(strings.Repeat("x", 32)) || a.Authorized("") {
		t.Error("Authorized")
	}
}
