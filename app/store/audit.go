package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"hearth/app"
)

type auditRow struct {
	bun.BaseModel `bun:"table:audit_log"`

	ID     int64          `bun:"id,pk,autoincrement"`
	At     time.Time      `bun:"at"`
	Actor  string         `bun:"actor"`
	Action string         `bun:"action"`
	VMID   sql.NullString `bun:"vm_id"`
	Addr   string         `bun:"addr"`
	Detail string         `bun:"detail"`
}

// Audit writes one entry on its own, for actions that change nothing else (a failed sign-in).
func (db *DB) Audit(ctx context.Context, e app.AuditEntry) error {
	return db.full(audit(ctx, db.bun, &e))
}

// AuditLog returns the newest entries, at most limit, about the VM vmID, or about anything
// when vmID is "".
func (db *DB) AuditLog(ctx context.Context, vmID string, limit int) ([]app.AuditEntry, error) {
	var rows []auditRow
	q := db.bun.NewSelect().Model(&rows).Order("id DESC").Limit(int64(limit))
	if vmID != "" {
		q = q.Where("vm_id = ?", vmID)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: read audit log: %w", err)
	}
	out := make([]app.AuditEntry, len(rows))
	for i, r := range rows {
		out[i] = app.AuditEntry{ID: r.ID, At: r.At.UTC(), Actor: r.Actor, Action: r.Action,
			VMID: r.VMID.String, Addr: r.Addr, Detail: r.Detail}
	}
	return out, nil
}
