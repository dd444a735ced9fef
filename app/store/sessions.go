package store

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"hearth/app"
)

type sessionRow struct {
	bun.BaseModel `bun:"table:sessions"`

	ID        string    `bun:"id,pk"` // hash of the cookie value; the value itself is never stored
	UserID    int64     `bun:"user_id"`
	CreatedAt time.Time `bun:"created_at"`
	ExpiresAt time.Time `bun:"expires_at"`
	Addr      string    `bun:"addr"`
	UserAgent string    `bun:"user_agent"`
}

// CreateSession stores a session for user under the hash of its cookie value, and e.
func (db *DB) CreateSession(ctx context.Context, hash string, userID int64, ttl time.Duration, addr, userAgent string, e *app.AuditEntry) error {
	return db.inTx(ctx, func(tx bun.Tx) error {
		t := now()
		r := sessionRow{ID: hash, UserID: userID, CreatedAt: t, ExpiresAt: t.Add(ttl), Addr: addr, UserAgent: userAgent}
		if _, err := tx.NewInsert().Model(&r).Exec(ctx); err != nil {
			return fmt.Errorf("store: insert session: %w", err)
		}
		return audit(ctx, tx, e)
	})
}

// SessionUser returns the user of the unexpired session whose hash is hash, or ENOTFOUND.
func (db *DB) SessionUser(ctx context.Context, hash string) (*app.User, error) {
	var u userRow
	err := db.bun.NewSelect().Model(&u).
		Where("id = (SELECT user_id FROM sessions WHERE id = ? AND expires_at > ?)", hash, now()).
		Scan(ctx)
	if err != nil {
		return nil, notFound(err, "session")
	}
	return u.toUser(), nil
}

// DeleteSession ends the session whose hash is hash and, if there was one, writes e. Ending
// a session that does not exist is not an error (the outcome is the same) and leaves no
// trace: anyone can post any cookie, and the audit log must not fill with it.
func (db *DB) DeleteSession(ctx context.Context, hash string, e *app.AuditEntry) (ended bool, err error) {
	err = db.inTx(ctx, func(tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*sessionRow)(nil)).Where("id = ?", hash).Exec(ctx)
		if err != nil {
			return fmt.Errorf("store: delete session: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		ended = true
		return audit(ctx, tx, e)
	})
	return ended, err
}

// DeleteExpiredSessions removes sessions past their expiry and returns how many.
func (db *DB) DeleteExpiredSessions(ctx context.Context) (int64, error) {
	res, err := db.bun.NewDelete().Model((*sessionRow)(nil)).Where("expires_at <= ?", now()).Exec(ctx)
	if err != nil {
		return 0, db.full(fmt.Errorf("store: delete expired sessions: %w", err))
	}
	return res.RowsAffected()
}
