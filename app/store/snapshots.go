package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"hearth/app"
)

type snapshotRow struct {
	bun.BaseModel `bun:"table:snapshots"`

	VMID       string       `bun:"vm_id,pk"`
	Name       string       `bun:"name,pk"`
	State      string       `bun:"state"`
	Kind       string       `bun:"kind"`
	Driver     string       `bun:"driver"`
	VCPUs      int          `bun:"vcpus"`
	MemoryMiB  int          `bun:"memory_mib"`
	SizeBytes  int64        `bun:"size_bytes"`
	TookMs     int64        `bun:"took_ms"`
	Error      string       `bun:"error"`
	CreatedAt  time.Time    `bun:"created_at"`
	FinishedAt sql.NullTime `bun:"finished_at"`
}

func (r *snapshotRow) toSnapshot() *app.Snapshot {
	s := &app.Snapshot{VMID: r.VMID, Name: r.Name, State: r.State, Kind: r.Kind, Driver: r.Driver, VCPUs: r.VCPUs,
		MemoryMiB: r.MemoryMiB, SizeBytes: r.SizeBytes, TookMillis: r.TookMs, Error: r.Error, CreatedAt: r.CreatedAt.UTC()}
	if r.FinishedAt.Valid {
		s.FinishedAt = r.FinishedAt.Time.UTC()
	}
	return s
}

// StartSnapshot records a snapshot being taken of a running or paused VM, and e, at once.
// ECONFLICT when the name is taken or another snapshot of the VM is being taken.
func (db *DB) StartSnapshot(ctx context.Context, s *app.Snapshot, e *app.AuditEntry) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		var state string
		if err := tx.NewSelect().Model((*vmRow)(nil)).Column("state").Where("id = ?", s.VMID).Scan(ctx, &state); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return app.Errorf(app.ENOTFOUND, "VM not found")
			}
			return fmt.Errorf("store: read vm: %w", err)
		}
		if !app.VMState(state).Live() {
			return app.Errorf(app.ECONFLICT, "the VM is %s: only a running or paused VM can be snapshotted", state)
		}
		busy, err := tx.NewSelect().Model((*snapshotRow)(nil)).Where("vm_id = ? AND state = ?", s.VMID, app.SnapshotTaking).Exists(ctx)
		if err != nil {
			return fmt.Errorf("store: check snapshots: %w", err)
		}
		if busy {
			return app.Errorf(app.ECONFLICT, "a snapshot of this VM is being taken; wait for it to finish")
		}
		s.State, s.CreatedAt, s.FinishedAt = app.SnapshotTaking, now(), time.Time{}
		r := snapshotRow{VMID: s.VMID, Name: s.Name, State: s.State, Kind: s.Kind, Driver: s.Driver, VCPUs: s.VCPUs,
			MemoryMiB: s.MemoryMiB, CreatedAt: s.CreatedAt}
		if _, err := tx.NewInsert().Model(&r).Exec(ctx); err != nil {
			if isUnique(err) {
				return app.Errorf(app.ECONFLICT, "the VM already has a snapshot named %q", s.Name)
			}
			return fmt.Errorf("store: insert snapshot: %w", err)
		}
		return audit(ctx, tx, e)
	})
}

// FinishSnapshot records how taking s ended (its State, SizeBytes, TookMillis, Error), and
// e, at once.
func (db *DB) FinishSnapshot(ctx context.Context, s *app.Snapshot, e *app.AuditEntry) error {
	s.FinishedAt = now()
	return db.inTx(ctx, func(tx bun.Tx) error {
		res, err := tx.NewUpdate().Model((*snapshotRow)(nil)).Set("state = ?", s.State).Set("size_bytes = ?", s.SizeBytes).
			Set("took_ms = ?", s.TookMillis).Set("error = ?", s.Error).Set("finished_at = ?", s.FinishedAt).
			Where("vm_id = ? AND name = ? AND state = ?", s.VMID, s.Name, app.SnapshotTaking).Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: finish snapshot: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return app.Errorf(app.ENOTFOUND, "snapshot %q is not being taken", s.Name)
		}
		return audit(ctx, tx, e)
	})
}

// Snapshots lists the VM's snapshots, oldest first.
func (db *DB) Snapshots(ctx context.Context, vmID string) ([]*app.Snapshot, error) {
	var rows []snapshotRow
	if err := db.bun.NewSelect().Model(&rows).Where("vm_id = ?", vmID).Order("created_at", "name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: list snapshots: %w", err)
	}
	out := make([]*app.Snapshot, len(rows))
	for i := range rows {
		out[i] = rows[i].toSnapshot()
	}
	return out, nil
}

// Snapshot returns one of the VM's snapshots, or ENOTFOUND.
func (db *DB) Snapshot(ctx context.Context, vmID, name string) (*app.Snapshot, error) {
	var r snapshotRow
	if err := db.bun.NewSelect().Model(&r).Where("vm_id = ? AND name = ?", vmID, name).Scan(ctx); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, app.Errorf(app.ENOTFOUND, "the VM has no snapshot named %q", name)
		}
		return nil, fmt.Errorf("store: read snapshot: %w", err)
	}
	return r.toSnapshot(), nil
}

// DeleteSnapshot removes a snapshot's record (one being taken: ECONFLICT), and e, at once.
func (db *DB) DeleteSnapshot(ctx context.Context, vmID, name string, e *app.AuditEntry) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*snapshotRow)(nil)).Where("vm_id = ? AND name = ? AND state <> ?", vmID, name, app.SnapshotTaking).Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: delete snapshot: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			exists, err := tx.NewSelect().Model((*snapshotRow)(nil)).Where("vm_id = ? AND name = ?", vmID, name).Exists(ctx)
			if err != nil {
				return fmt.Errorf("store: read snapshot: %w", err)
			}
			if !exists {
				return app.Errorf(app.ENOTFOUND, "the VM has no snapshot named %q", name)
			}
			return app.Errorf(app.ECONFLICT, "snapshot %q is being taken; delete it once it has finished", name)
		}
		return audit(ctx, tx, e)
	})
}

// FailTakingSnapshots marks every snapshot left 'taking' by a manager that died as failed:
// its files were never completed (the start-up sweep removes them).
func (db *DB) FailTakingSnapshots(ctx context.Context) (int, error) {
	res, err := db.bun.NewUpdate().Model((*snapshotRow)(nil)).Set("state = ?", app.SnapshotFailed).
		Set("error = ?", "the manager stopped while the snapshot was being taken").Set("finished_at = ?", now()).
		Where("state = ?", app.SnapshotTaking).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: fail unfinished snapshots: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
