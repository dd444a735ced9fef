package store_test

import (
	"context"
	"testing"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/storetest"
)

func TestInstallJobs(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCreate(t, db, newVM("a1", "alpha"))
		if _, err := db.LatestJob(ctx, "a1"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Fatalf("no job yet: %v", err)
		}
		j := &app.InstallJob{ID: "j1", VMID: "a1", Steps: []app.JobStep{{Name: "connect", State: "running"}, {Name: "upload", State: "pending"}}}
		if err := db.StartJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		if err := db.StartJob(ctx, &app.InstallJob{ID: "j2", VMID: "a1"}, nil); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("second running job: %v", err)
		}
		j.Steps[0].State, j.Steps[1].State, j.State, j.Error = "done", "failed", app.JobFailed, "upload: boom"
		if err := db.UpdateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		got, err := db.LatestJob(ctx, "a1")
		if err != nil || got.State != app.JobFailed || got.Error != "upload: boom" || got.Steps[1].State != "failed" || got.FinishedAt.IsZero() {
			t.Fatalf("latest: %+v %v", got, err)
		}
		// A finished job no longer blocks a new one; a restart fails the running ones.
		if err := db.StartJob(ctx, &app.InstallJob{ID: "j3", VMID: "a1", Steps: []app.JobStep{}}, nil); err != nil {
			t.Fatal(err)
		}
		if n, err := db.FailRunningJobs(ctx, "manager restarted"); err != nil || n != 1 {
			t.Errorf("FailRunningJobs = %d, %v", n, err)
		}
		if got, _ := db.LatestJob(ctx, "a1"); got.ID != "j3" || got.State != app.JobFailed || got.Error != "manager restarted" {
			t.Errorf("after restart: %+v", got)
		}
		if err := db.SetAgentToken(ctx, "a1", "hag_new"); err != nil {
			t.Fatal(err)
		}
		if v, _ := db.VM(ctx, "a1"); v.AgentToken != "hag_new" {
			t.Errorf("agent token %q", v.AgentToken)
		}
		// Jobs go with their VM.
		if err := db.DeleteVM(ctx, "a1", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := db.LatestJob(ctx, "a1"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("jobs of a deleted VM: %v", err)
		}
	})
}
