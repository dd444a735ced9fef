package store_test

import (
	"context"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/storetest"
)

// TestActionQueue: actions are claimed oldest first by their node only, once; finished
// ones are swept after a while, queued and running ones never; the install action is
// accepted (migration 20 widened the CHECK on both dialects).
func TestActionQueue(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for i, act := range []string{app.ActionStart, app.ActionInstall, app.ActionStop} {
			node := "beta"
			if i == 2 {
				node = "gamma"
			}
			a := &app.VMAction{ID: act, VMID: "v1", Node: node, Action: act, Actor: "user:ops"}
			if err := db.QueueAction(ctx, a, nil); err != nil {
				t.Fatalf("queue %s: %v", act, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		first, err := db.NextAction(ctx, "beta")
		if err != nil || first == nil || first.Action != app.ActionStart || first.State != app.ActionRunning {
			t.Fatalf("beta's first: %+v %v", first, err)
		}
		second, _ := db.NextAction(ctx, "beta")
		if second == nil || second.Action != app.ActionInstall {
			t.Fatalf("beta's second: %+v", second)
		}
		if none, _ := db.NextAction(ctx, "beta"); none != nil {
			t.Errorf("beta claimed %+v: gamma's, or one claimed already", none)
		}
		if err := db.FinishAction(ctx, first.ID, app.ActionDone, ""); err != nil {
			t.Fatal(err)
		}
		if pending, _ := db.PendingActions(ctx, "v1"); len(pending) != 2 {
			t.Errorf("pending after one done: %d", len(pending))
		}
		n, err := db.DeleteFinishedActions(ctx, time.Now().Add(time.Second))
		if err != nil || n != 1 {
			t.Errorf("swept %d, %v; want the one finished", n, err)
		}
		if _, err := db.Action(ctx, first.ID); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("the swept action: %v", err)
		}
		if a, err := db.Action(ctx, second.ID); err != nil || a.State != app.ActionRunning {
			t.Errorf("the running action after the sweep: %+v %v", a, err)
		}
		if n, _ := db.FailRunningActions(ctx, "beta"); n != 1 {
			t.Errorf("beta's running actions failed at its restart: %d", n)
		}
	})
}
