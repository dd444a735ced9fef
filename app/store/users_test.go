package store_test

import (
	"context"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/storetest"
)

func TestUsersAndSessions(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if n, _ := db.UserCount(ctx); n != 0 {
			t.Fatalf("fresh db has %d users", n)
		}
		u, err := db.CreateUser(ctx, "admin", "h1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if u.ID == 0 {
			t.Error("created user has no id")
		}
		if _, err := db.CreateUser(ctx, "admin", "h2", nil); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("duplicate user: err = %v, want conflict", err)
		}
		if err := db.CreateSession(ctx, "s1", u.ID, time.Hour, "127.0.0.1", "test", nil); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateSession(ctx, "old", u.ID, -time.Second, "127.0.0.1", "test", nil); err != nil {
			t.Fatal(err)
		}
		got, err := db.SessionUser(ctx, "s1")
		if err != nil || got.Name != "admin" {
			t.Fatalf("SessionUser(s1) = %v, %v", got, err)
		}
		if _, err := db.SessionUser(ctx, "old"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("expired session: err = %v, want not found", err)
		}
		if n, err := db.DeleteExpiredSessions(ctx); err != nil || n != 1 {
			t.Errorf("DeleteExpiredSessions = %d, %v; want 1", n, err)
		}
		// A new password ends every session of the user.
		if err := db.SetPassword(ctx, "admin", "h3", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SessionUser(ctx, "s1"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("session after password change: err = %v, want not found", err)
		}
		_, hash, err := db.UserPasswordHash(ctx, "admin")
		if err != nil || hash != "h3" {
			t.Errorf("password hash = %q, %v; want h3", hash, err)
		}
		if err := db.SetPassword(ctx, "nobody", "h", nil); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("passwd for missing user: err = %v, want not found", err)
		}
		if err := db.CreateSession(ctx, "s2", u.ID, time.Hour, "", "", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := db.DeleteSession(ctx, "s2", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SessionUser(ctx, "s2"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("deleted session: err = %v, want not found", err)
		}
	})
}

func TestAPITokens(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.CreateAPIToken(ctx, "ci", "th", nil); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateAPIToken(ctx, "ci", "th2", nil); app.ErrorCode(err) != app.ECONFLICT {
			t.Errorf("duplicate token name: err = %v, want conflict", err)
		}
		if name, err := db.APITokenName(ctx, "th"); err != nil || name != "ci" {
			t.Errorf("APITokenName = %q, %v; want ci", name, err)
		}
		if _, err := db.APITokenName(ctx, "nope"); app.ErrorCode(err) != app.ENOTFOUND {
			t.Errorf("unknown token: err = %v, want not found", err)
		}
	})
}

func TestMigrateIsIdempotent(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		applied, err := db.Migrate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(applied) != 0 {
			t.Errorf("second Migrate applied %v, want nothing", applied)
		}
	})
}
