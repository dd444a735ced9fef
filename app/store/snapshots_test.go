package store_test

import (
	"context"
	"testing"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/storetest"
)

// TestSnapshotRecords: a paused state is stored (migration 16 widened the CHECK in both
// dialects) and bad states are still refused; snapshot records are taken only of live VMs,
// one at a time, with unique names; finishing, listing, deleting, and the sweep that marks
// a dead manager's unfinished snapshots failed; deleting the VM deletes its snapshots.
func TestSnapshotRecords(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCreate(t, db, newVM("a1", "alpha"))
		snap := func(name string) *app.Snapshot {
			return &app.Snapshot{VMID: "a1", Name: name, Kind: "full", Driver: "qemu", VCPUs: 1, MemoryMiB: 256}
		}
		if err := db.StartSnapshot(ctx, snap("s0"), nil); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("snapshot of a defined VM: %v", err)
		}
		if err := db.SetRun(ctx, "a1", store.Run{State: app.VMPaused, PID: 42}, nil); err != nil {
			t.Fatalf("paused: %v", err)
		}
		if v, _ := db.VM(ctx, "a1"); v.State != app.VMPaused {
			t.Errorf("state %q", v.State)
		}
		if err := db.SetRun(ctx, "a1", store.Run{State: "frozen"}, nil); err == nil {
			t.Error("an unknown state was stored")
		}
		s1 := snap("s1")
		if err := db.StartSnapshot(ctx, s1, &app.AuditEntry{Actor: "t", Action: app.AuditSnapshot, VMID: "a1"}); err != nil {
			t.Fatal(err)
		}
		if err := db.StartSnapshot(ctx, snap("s2"), nil); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("a second snapshot while one is taken: %v", err)
		}
		if err := db.DeleteSnapshot(ctx, "a1", "s1", nil); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("delete of a snapshot being taken: %v", err)
		}
		s1.State, s1.SizeBytes, s1.TookMillis = app.SnapshotReady, 1234, 56
		if err := db.FinishSnapshot(ctx, s1, nil); err != nil {
			t.Fatal(err)
		}
		if err := db.FinishSnapshot(ctx, s1, nil); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("finishing twice: %v", err)
		}
		if err := db.StartSnapshot(ctx, snap("s1"), nil); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("a taken name: %v", err)
		}
		if err := db.StartSnapshot(ctx, snap("s2"), nil); err != nil {
			t.Fatal(err)
		}
		if n, err := db.FailTakingSnapshots(ctx); n != 1 || err != nil {
			t.Errorf("sweep: %d %v", n, err)
		}
		list, err := db.Snapshots(ctx, "a1")
		if err != nil || len(list) != 2 {
			t.Fatalf("list: %v %v", list, err)
		}
		if g := list[0]; g.Name != "s1" || g.State != app.SnapshotReady || g.SizeBytes != 1234 || g.TookMillis != 56 || g.FinishedAt.IsZero() {
			t.Errorf("s1: %+v", g)
		}
		if g := list[1]; g.State != app.SnapshotFailed || g.Error == "" {
			t.Errorf("s2 after the sweep: %+v", g)
		}
		if err := db.DeleteSnapshot(ctx, "a1", "s2", nil); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteSnapshot(ctx, "a1", "s2", nil); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("delete twice: %v", err)
		}
		if _, err := db.Snapshot(ctx, "a1", "s2"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("read a deleted one: %v", err)
		}
		if err := db.StartSnapshot(ctx, &app.Snapshot{VMID: "nope", Name: "x", Kind: "full", Driver: "qemu", VCPUs: 1, MemoryMiB: 1}, nil); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("snapshot of no VM: %v", err)
		}
		db.SetRun(ctx, "a1", store.Run{State: app.VMStopped}, nil)
		if err := db.DeleteVM(ctx, "a1", nil); err != nil {
			t.Fatal(err)
		}
		if list, _ := db.Snapshots(ctx, "a1"); len(list) != 0 {
			t.Errorf("a deleted VM's snapshots remain: %v", list)
		}
	})
}
