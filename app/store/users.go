package store

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"hearth/app"
)

type userRow struct {
	bun.BaseModel `bun:"table:users"`

	ID           int64     `bun:"id,pk,autoincrement"`
	Name         string    `bun:"name"`
	PasswordHash string    `bun:"password_hash"`
	CreatedAt    time.Time `bun:"created_at"`
	UpdatedAt    time.Time `bun:"updated_at"`
}

func (r *userRow) toUser() *app.User {
	return &app.User{ID: r.ID, Name: r.Name, CreatedAt: r.CreatedAt.UTC()}
}

// CreateUser inserts a user with a password hash. A taken name is ECONFLICT.
func (db *DB) CreateUser(ctx context.Context, name, passwordHash string, e *app.AuditEntry) (*app.User, error) {
	r := userRow{Name: name, PasswordHash: passwordHash, CreatedAt: now()}
	r.UpdatedAt = r.CreatedAt
	err := db.inTx(ctx, func(tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(&r).Returning("id").Exec(ctx); err != nil {
			if isUnique(err) {
				return app.Errorf(app.ECONFLICT, "a user named %q already exists", name)
			}
			return fmt.Errorf("store: insert user: %w", err)
		}
		return audit(ctx, tx, e)
	})
	if err != nil {
		return nil, err
	}
	return r.toUser(), nil
}

// UserPasswordHash returns the user named name and their password hash, or ENOTFOUND.
func (db *DB) UserPasswordHash(ctx context.Context, name string) (*app.User, string, error) {
	var r userRow
	if err := db.bun.NewSelect().Model(&r).Where("name = ?", name).Scan(ctx); err != nil {
		return nil, "", notFound(err, "user")
	}
	return r.toUser(), r.PasswordHash, nil
}

// SetPassword replaces a user's password hash and ends all their sessions, at once.
func (db *DB) SetPassword(ctx context.Context, name, passwordHash string, e *app.AuditEntry) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		var r userRow
		if err := tx.NewSelect().Model(&r).Where("name = ?", name).Scan(ctx); err != nil {
			return notFound(err, "user")
		}
		if _, err := tx.NewUpdate().Model((*userRow)(nil)).Set("password_hash = ?", passwordHash).
			Set("updated_at = ?", now()).Where("id = ?", r.ID).Exec(ctx); err != nil {
			return fmt.Errorf("store: set password: %w", err)
		}
		if _, err := tx.NewDelete().Model((*sessionRow)(nil)).Where("user_id = ?", r.ID).Exec(ctx); err != nil {
			return fmt.Errorf("store: end sessions: %w", err)
		}
		return audit(ctx, tx, e)
	})
}

// UserCount returns how many users exist.
func (db *DB) UserCount(ctx context.Context) (int, error) {
	n, err := db.bun.NewSelect().Model((*userRow)(nil)).Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: count users: %w", err)
	}
	return int(n), nil
}
