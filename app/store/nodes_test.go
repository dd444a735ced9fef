package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/storetest"
)

// TestNodes: a node registers (claiming the VMs made before nodes), heartbeats, and is down
// after three missed intervals; a second node is one more row on PostgreSQL and refused on
// SQLite with what to do; VMs are counted and queried per node.
func TestNodes(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCreate(t, db, newVM("a1", "before-nodes"))
		a := &app.Node{Name: "alpha", URL: "http://10.0.0.1:8080", CPUs: 4, MemoryMiB: 8192, Network: "10.77.0.0/24", Version: "t", Interval: time.Second}
		if err := db.RegisterNode(ctx, a); err != nil {
			t.Fatal(err)
		}
		if v, _ := db.VM(ctx, "a1"); v.Node != "alpha" {
			t.Errorf("the VM made before nodes belongs to %q", v.Node)
		}
		first := a.HeartbeatAt
		time.Sleep(5 * time.Millisecond)
		at, err := db.Heartbeat(ctx, "alpha")
		if err != nil || !at.After(first) {
			t.Fatalf("heartbeat: %v %v", at, err)
		}
		if _, err := db.Heartbeat(ctx, "nobody"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("heartbeat of an unknown node: %v", err)
		}
		nodes, err := db.Nodes(ctx)
		if err != nil || len(nodes) != 1 {
			t.Fatalf("nodes: %v %v", nodes, err)
		}
		n := nodes[0]
		if n.URL != a.URL || n.CPUs != 4 || n.MemoryMiB != 8192 || n.Network != a.Network || n.Interval != time.Second || !n.HeartbeatAt.Equal(at) {
			t.Errorf("node read back: %+v", n)
		}
		if n.StateAt(at.Add(2*time.Second)) != app.NodeUp || n.StateAt(at.Add(3100*time.Millisecond)) != app.NodeDown {
			t.Errorf("state after 2 s / 3.1 s of a 1 s heartbeat: %s / %s", n.StateAt(at.Add(2*time.Second)), n.StateAt(at.Add(3100*time.Millisecond)))
		}
		// Registering again (a restart) keeps one row.
		if err := db.RegisterNode(ctx, a); err != nil {
			t.Fatal(err)
		}
		b := &app.Node{Name: "beta", URL: "http://10.0.0.2:8080", Interval: time.Second}
		err = db.RegisterNode(ctx, b)
		if db.Dialect() == "sqlite" {
			if app.ErrorCode(err) != app.ECONFLICT || !strings.Contains(err.Error(), `belongs to node "alpha"`) || !strings.Contains(err.Error(), "--node alpha") {
				t.Errorf("a second node on SQLite: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("a second node on PostgreSQL: %v", err)
		}
		v := newVM("b1", "on-beta")
		v.Node = "beta"
		mustCreate(t, db, v)
		db.SetRun(ctx, "b1", store.Run{State: app.VMRunning, PID: 1}, nil)
		db.SetRun(ctx, "a1", store.Run{State: app.VMPaused, PID: 1}, nil)
		if l, err := db.NodeLoads(ctx); err != nil || l["alpha"].VMs != 1 || l["beta"].VMs != 1 || l["beta"].Running != 1 || l["alpha"].Running != 1 ||
			l["beta"].MemoryMiB != 512 || l["beta"].VCPUs != 2 {
			t.Errorf("loads: %v %v", l, err)
		}
		for node, want := range map[string]string{"alpha": "a1", "beta": "b1", "": "a1,b1"} {
			vms, err := db.RunningVMs(ctx, node)
			var ids []string
			for _, v := range vms {
				ids = append(ids, v.ID)
			}
			if err != nil || strings.Join(ids, ",") != want && strings.Join(ids, ",") != "b1,a1" {
				t.Errorf("running VMs of %q: %v %v", node, ids, err)
			}
		}
		if nodes, _ := db.Nodes(ctx); len(nodes) != 2 || nodes[0].Name != "alpha" || nodes[1].Name != "beta" {
			t.Errorf("two nodes: %v", nodes)
		}
	})
}

// TestOnceInCluster: on PostgreSQL a second node does not run housekeeping another node
// runs now, and runs it once that one is done; on SQLite it always runs.
func TestOnceInCluster(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		inside, release := make(chan struct{}), make(chan struct{})
		go db.OnceInCluster(ctx, "t.job", func(context.Context) error { close(inside); <-release; return nil })
		<-inside
		ran, err := db.OnceInCluster(ctx, "t.job", func(context.Context) error { return nil })
		if db.Dialect() == "sqlite" {
			if !ran || err != nil {
				t.Errorf("SQLite: ran %v, %v", ran, err)
			}
			close(release)
			return
		}
		if ran || err != nil {
			t.Errorf("a second run while the first holds the lock: ran %v, %v", ran, err)
		}
		if ran, _ := db.OnceInCluster(ctx, "t.other", func(context.Context) error { return nil }); !ran {
			t.Error("another job's name was locked too")
		}
		close(release)
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if ran, _ := db.OnceInCluster(ctx, "t.job", func(context.Context) error { return nil }); ran {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the lock was never released")
			}
		}
	})
}

// TestImagesBeforeNodes: an image from before nodes (no node yet) is found under any node's
// name until the first node to start claims it; then it is that node's only.
func TestImagesBeforeNodes(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.CreateImage(ctx, &app.Image{Name: "old", State: app.ImageReady, Source: app.ImageImported}, nil); err != nil {
			t.Fatal(err)
		}
		if im, err := db.Image(ctx, "alpha", "old"); err != nil || im.Node != "" {
			t.Fatalf("the image of before nodes, asked for by alpha before it registered: %+v %v", im, err)
		}
		if err := db.RegisterNode(ctx, &app.Node{Name: "alpha", URL: "http://a", Interval: time.Second}); err != nil {
			t.Fatal(err)
		}
		if im, err := db.Image(ctx, "alpha", "old"); err != nil || im.Node != "alpha" {
			t.Errorf("after alpha registered: %+v %v", im, err)
		}
		if _, err := db.Image(ctx, "beta", "old"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("alpha's image asked for by beta: %v", err)
		}
	})
}
