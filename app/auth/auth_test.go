package auth

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"hearth/app"
	"hearth/app/store"
	"hearth/app/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

var system = app.Actor{Kind: app.ActorSystem}

func TestSignInFlow(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := NewService(db, NewThrottle(5, time.Minute), bcrypt.MinCost)
		gen, created, err := s.EnsureAdmin(ctx, "")
		if err != nil || !created || len(gen) < 20 {
			t.Fatalf("EnsureAdmin = %q, %v, %v; want a generated password", gen, created, err)
		}
		if _, again, _ := s.EnsureAdmin(ctx, "other-password"); again {
			t.Error("EnsureAdmin created a second admin")
		}
		if _, _, err := s.SignIn(ctx, "admin", "wrong-password", "10.0.0.1", "ua"); app.ErrorCode(err) != app.EUNAUTHORIZED {
			t.Errorf("wrong password: %v", err)
		}
		if _, _, err := s.SignIn(ctx, "ghost", gen, "10.0.0.1", "ua"); app.ErrorCode(err) != app.EUNAUTHORIZED || !strings.Contains(err.Error(), "wrong name or password") {
			t.Errorf("unknown user: %v (must not reveal that the user does not exist)", err)
		}
		tok, u, err := s.SignIn(ctx, "admin", gen, "10.0.0.1", "ua")
		if err != nil || u.Name != "admin" {
			t.Fatalf("SignIn: %v", err)
		}
		if got, err := s.SessionUser(ctx, tok); err != nil || got.Name != "admin" {
			t.Errorf("SessionUser: %v, %v", got, err)
		}
		if err := s.SignOut(ctx, tok, app.Actor{Kind: app.ActorUser, Name: "admin"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SessionUser(ctx, tok); app.ErrorCode(err) != app.EUNAUTHORIZED {
			t.Errorf("session after sign-out: %v, want unauthorized", err)
		}
		log, _ := db.AuditLog(ctx, "", 20)
		var actions []string
		for _, e := range log {
			actions = append(actions, e.Action)
		}
		want := "sign_out sign_in sign_in_failed sign_in_failed user.create"
		if strings.Join(actions, " ") != want {
			t.Errorf("audit actions = %v, want %s", actions, want)
		}
	})
}

func TestPasswordRules(t *testing.T) {
	db := storetest.SQLite(t)
	s := NewService(db, NewThrottle(5, time.Minute), bcrypt.MinCost)
	ctx := context.Background()
	for _, tc := range []struct{ name, pw, field string }{
		{"ok-name", "short", "password"},
		{"ok-name", strings.Repeat("x", 73), "password"},
		{"Bad Name", "long-enough", "name"},
		{"", "long-enough", "name"},
	} {
		if _, err := s.CreateUser(ctx, tc.name, tc.pw, system); app.ErrorFields(err)[tc.field] == "" {
			t.Errorf("CreateUser(%q, len %d): %v, want a %s error", tc.name, len(tc.pw), err, tc.field)
		}
	}
	if err := s.SetPassword(ctx, "nobody", "long-enough", system); app.ErrorCode(err) != app.ENOTFOUND {
		t.Errorf("SetPassword for missing user: %v", err)
	}
}

func TestThrottle(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := NewThrottle(3, time.Minute)
	th.Now = func() time.Time { return clock }
	for i := 0; i < 3; i++ {
		if w := th.Blocked("1.1.1.1", "admin"); w != 0 {
			t.Fatalf("blocked after %d failures", i)
		}
		th.Fail("1.1.1.1", "admin")
		clock = clock.Add(10 * time.Second)
	}
	if w := th.Blocked("1.1.1.1", "admin"); w != 30*time.Second {
		t.Errorf("after 3 failures wait = %v, want 30s (until the first failure is a minute old)", w)
	}
	// The user name is blocked from any address, and the address for any user name.
	if th.Blocked("2.2.2.2", "admin") == 0 || th.Blocked("1.1.1.1", "bob") == 0 {
		t.Error("throttle must hold per address and per user name")
	}
	clock = clock.Add(31 * time.Second)
	if w := th.Blocked("1.1.1.1", "admin"); w != 0 {
		t.Errorf("after the window: wait %v, want 0", w)
	}
}

func TestSignInThrottled(t *testing.T) {
	db := storetest.SQLite(t)
	s := NewService(db, NewThrottle(2, time.Hour), bcrypt.MinCost)
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, "admin", "right-password", system); err != nil {
		t.Fatal(err)
	}
	s.SignIn(ctx, "admin", "nope-nope", "10.0.0.1", "")
	s.SignIn(ctx, "admin", "nope-nope", "10.0.0.1", "")
	// Even the right password is refused while throttled: guessing must not pay off.
	if _, _, err := s.SignIn(ctx, "admin", "right-password", "10.0.0.1", ""); app.ErrorCode(err) != app.ETHROTTLED {
		t.Errorf("right password while throttled: %v, want throttled", err)
	}
}

func TestAPITokens(t *testing.T) {
	db := storetest.SQLite(t)
	s := NewService(db, NewThrottle(2, time.Hour), bcrypt.MinCost)
	ctx := context.Background()
	tok, err := s.CreateAPIToken(ctx, "ci", system)
	if err != nil || !strings.HasPrefix(tok, app.PrefixAPIToken) {
		t.Fatalf("CreateAPIToken = %q, %v", tok, err)
	}
	if name, err := s.APIToken(ctx, tok); err != nil || name != "ci" {
		t.Errorf("APIToken = %q, %v", name, err)
	}
	if _, err := s.APIToken(ctx, tok+"x"); app.ErrorCode(err) != app.EUNAUTHORIZED {
		t.Errorf("wrong token: %v", err)
	}
}
