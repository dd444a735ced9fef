package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"hearth/app"
)

type jobRow struct {
	bun.BaseModel `bun:"table:install_jobs"`

	ID         string       `bun:"id,pk"`
	VMID       string       `bun:"vm_id"`
	State      string       `bun:"state"`
	Steps      string       `bun:"steps"`
	Error      string       `bun:"error"`
	CreatedAt  time.Time    `bun:"created_at"`
	UpdatedAt  time.Time    `bun:"updated_at"`
	FinishedAt sql.NullTime `bun:"finished_at"`
}

func (r *jobRow) toJob() (*app.InstallJob, error) {
	j := &app.InstallJob{ID: r.ID, VMID: r.VMID, State: r.State, Error: r.Error,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
	if r.FinishedAt.Valid {
		j.FinishedAt = r.FinishedAt.Time.UTC()
	}
	if err := json.Unmarshal([]byte(r.Steps), &j.Steps); err != nil {
		return nil, fmt.Errorf("store: job %s steps: %w", r.ID, err)
	}
	return j, nil
}

// StartJob inserts a running job for the VM unless one is already running (ECONFLICT).
func (db *DB) StartJob(ctx context.Context, j *app.InstallJob, e *app.AuditEntry) error {
	steps, err := json.Marshal(j.Steps)
	if err != nil {
		return err
	}
	return db.inTx(ctx, func(tx bun.Tx) error {
		running, err := tx.NewSelect().Model((*jobRow)(nil)).Where("vm_id = ?", j.VMID).Where("state = ?", app.JobRunning).Exists(ctx)
		if err != nil {
			return fmt.Errorf("store: check jobs: %w", err)
		}
		if running {
			return app.Errorf(app.ECONFLICT, "an agent install is already running on this VM")
		}
		t := now()
		j.CreatedAt, j.UpdatedAt, j.State = t, t, app.JobRunning
		r := jobRow{ID: j.ID, VMID: j.VMID, State: j.State, Steps: string(steps), CreatedAt: t, UpdatedAt: t}
		if _, err := tx.NewInsert().Model(&r).Exec(ctx); err != nil {
			return fmt.Errorf("store: insert job: %w", err)
		}
		return audit(ctx, tx, e)
	})
}

// UpdateJob writes a job's state, steps and error; a finished state stamps finished_at.
// Texts are bounded (MaxDetail), whatever the guest made them.
func (db *DB) UpdateJob(ctx context.Context, j *app.InstallJob, e *app.AuditEntry) error {
	j.Error = app.Clip(j.Error, MaxDetail)
	for i := range j.Steps {
		j.Steps[i].Detail = app.Clip(j.Steps[i].Detail, MaxDetail)
	}
	steps, err := json.Marshal(j.Steps)
	if err != nil {
		return err
	}
	return db.inTx(ctx, func(tx bun.Tx) error {
		t := now()
		q := tx.NewUpdate().Model((*jobRow)(nil)).Set("state = ?", j.State).Set("steps = ?", string(steps)).
			Set("error = ?", j.Error).Set("updated_at = ?", t).Where("id = ?", j.ID)
		if j.State != app.JobRunning {
			q = q.Set("finished_at = ?", t)
			j.FinishedAt = t
		}
		if _, err := q.Exec(ctx); err != nil {
			return fmt.Errorf("store: update job: %w", err)
		}
		j.UpdatedAt = t
		return audit(ctx, tx, e)
	})
}

// LatestJob returns the VM's newest install job, or ENOTFOUND.
func (db *DB) LatestJob(ctx context.Context, vmID string) (*app.InstallJob, error) {
	var r jobRow
	err := db.bun.NewSelect().Model(&r).Where("vm_id = ?", vmID).Order("created_at DESC").Limit(1).Scan(ctx)
	if err != nil {
		return nil, notFound(err, "agent install")
	}
	return r.toJob()
}

// FailRunningJobs marks jobs left running by a previous manager process as failed: their
// goroutines died with it.
func (db *DB) FailRunningJobs(ctx context.Context, reason string) (int64, error) {
	res, err := db.bun.NewUpdate().Model((*jobRow)(nil)).Set("state = ?", app.JobFailed).Set("error = ?", reason).
		Set("finished_at = ?", now()).Set("updated_at = ?", now()).Where("state = ?", app.JobRunning).Exec(ctx)
	if err != nil {
		return 0, db.full(fmt.Errorf("store: fail running jobs: %w", err))
	}
	return res.RowsAffected()
}

// SetAgentToken gives a VM an agent token (installs into VMs created without a seed).
func (db *DB) SetAgentToken(ctx context.Context, id, token string) error {
	res, err := db.bun.NewUpdate().Model((*vmRow)(nil)).Set("agent_token = ?", token).Set("updated_at = ?", now()).
		Where("id = ?", id).Exec(ctx)
	if err != nil {
		return db.full(fmt.Errorf("store: set agent token: %w", err))
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return app.Errorf(app.ENOTFOUND, "VM not found")
	}
	return nil
}
