package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"hearth/app"
)

type registrationTokenRow struct {
	bun.BaseModel `bun:"table:registration_tokens"`

	VMID      string    `bun:"vm_id,pk"`
	Hash      string    `bun:"hash"`
	CreatedAt time.Time `bun:"created_at"`
}

type apiTokenRow struct {
	bun.BaseModel `bun:"table:api_tokens"`

	ID         int64        `bun:"id,pk,autoincrement"`
	Name       string       `bun:"name"`
	Hash       string       `bun:"hash"`
	CreatedAt  time.Time    `bun:"created_at"`
	LastUsedAt sql.NullTime `bun:"last_used_at"`
}

// RegistrationTokenVM returns the id of the VM whose registration token hashes to hash, or
// ENOTFOUND.
func (db *DB) RegistrationTokenVM(ctx context.Context, hash string) (string, error) {
	var r registrationTokenRow
	if err := db.bun.NewSelect().Model(&r).Where("hash = ?", hash).Scan(ctx); err != nil {
		return "", notFound(err, "registration token")
	}
	return r.VMID, nil
}

// RegistrationTokenHash returns the stored hash of a VM's registration token, or ENOTFOUND.
func (db *DB) RegistrationTokenHash(ctx context.Context, vmID string) (string, error) {
	var r registrationTokenRow
	if err := db.bun.NewSelect().Model(&r).Where("vm_id = ?", vmID).Scan(ctx); err != nil {
		return "", notFound(err, "registration token")
	}
	return r.Hash, nil
}

// ReplaceRegistrationToken sets a new token hash for the VM, so the old token stops working.
func (db *DB) ReplaceRegistrationToken(ctx context.Context, vmID, hash string, e *app.AuditEntry) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		res, err := tx.NewUpdate().Model((*registrationTokenRow)(nil)).Set("hash = ?", hash).
			Set("created_at = ?", now()).Where("vm_id = ?", vmID).Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: replace registration token: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return app.Errorf(app.ENOTFOUND, "VM not found")
		}
		return audit(ctx, tx, e)
	})
}

// CreateAPIToken stores a named API token's hash. A taken name is ECONFLICT.
func (db *DB) CreateAPIToken(ctx context.Context, name, hash string, e *app.AuditEntry) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		r := apiTokenRow{Name: name, Hash: hash, CreatedAt: now()}
		if _, err := tx.NewInsert().Model(&r).Exec(ctx); err != nil {
			if isUnique(err) {
				return app.Errorf(app.ECONFLICT, "a token named %q already exists", name)
			}
			return fmt.Errorf("store: insert api token: %w", err)
		}
		return audit(ctx, tx, e)
	})
}

// APITokenName returns the name of the API token whose hash is hash, or ENOTFOUND, and
// records its use.
func (db *DB) APITokenName(ctx context.Context, hash string) (string, error) {
	var r apiTokenRow
	if err := db.bun.NewSelect().Model(&r).Where("hash = ?", hash).Scan(ctx); err != nil {
		return "", notFound(err, "API token")
	}
	// Last use is informative only; a failure to record it must not refuse the request.
	_, _ = db.bun.NewUpdate().Model((*apiTokenRow)(nil)).Set("last_used_at = ?", now()).Where("id = ?", r.ID).Exec(ctx)
	return r.Name, nil
}

// APITokens lists the API tokens by name.
func (db *DB) APITokens(ctx context.Context) ([]app.APIToken, error) {
	var rows []apiTokenRow
	if err := db.bun.NewSelect().Model(&rows).Order("name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: list api tokens: %w", err)
	}
	out := make([]app.APIToken, len(rows))
	for i, r := range rows {
		out[i] = app.APIToken{Name: r.Name, CreatedAt: r.CreatedAt.UTC()}
		if r.LastUsedAt.Valid {
			out[i].LastUsedAt = r.LastUsedAt.Time.UTC()
		}
	}
	return out, nil
}

// DeleteAPIToken revokes the named API token, and writes e, at once; an unknown name is
// ENOTFOUND.
func (db *DB) DeleteAPIToken(ctx context.Context, name string, e *app.AuditEntry) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*apiTokenRow)(nil)).Where("name = ?", name).Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: delete api token: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return app.Errorf(app.ENOTFOUND, "no API token is named %q", name)
		}
		return audit(ctx, tx, e)
	})
}
