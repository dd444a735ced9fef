package auth

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/storetest"
	"hearth/internal/testkit/testenv"
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
		// An unknown user's password is compared against a real hash of the same cost,
		// so it costs what a known user's does.
		if cost, err := bcrypt.Cost(s.dummy()); err != nil || cost != bcrypt.MinCost {
			t.Errorf("the unknown users' hash: cost %d, %v", cost, err)
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
	// The name from a fresh address, and another name from this address, still get a try.
	if w := th.Blocked("2.2.2.2", "admin"); w != 0 {
		t.Errorf("a fresh address is locked out of admin for %v", w)
	}
	if w := th.Blocked("1.1.1.1", "bob"); w != 0 {
		t.Errorf("another name from the guessing address waits %v before its own limit", w)
	}
	// But an address that has failed itself waits while the name is under attack.
	th.Fail("3.3.3.3", "bob")
	if th.Blocked("3.3.3.3", "admin") == 0 {
		t.Error("an address with failures of its own is let at a name that is under attack")
	}
	clock = clock.Add(31 * time.Second)
	if w := th.Blocked("1.1.1.1", "admin"); w != 0 {
		t.Errorf("after the window: wait %v, want 0", w)
	}
}

// TestThrottleAddressSpray: one address guessing at many names is held by its own limit.
func TestThrottleAddressSpray(t *testing.T) {
	th := NewThrottle(3, time.Minute)
	for i := 0; i < th.MaxAddr; i++ {
		th.Fail("6.6.6.6", "user"+strconv.Itoa(i))
	}
	if th.Blocked("6.6.6.6", "somebody-new") == 0 {
		t.Errorf("%d failures on different names from one address, and it may go on", th.MaxAddr)
	}
	if th.Blocked("7.7.7.7", "somebody-new") != 0 {
		t.Error("another address is held by the sprayer's limit")
	}
}

// TestThrottleBounded reproduces the memory sink: failed sign-ins with 4 MiB names, and
// floods of distinct addresses, keep the table small; expired keys are swept.
func TestThrottleBounded(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := NewThrottle(10, 15*time.Minute)
	th.Now = func() time.Time { return clock }
	th.MaxKeys = 1000
	huge := strings.Repeat("x", 4<<20)
	before := testenv.HeapInUse()
	for i := 0; i < 80; i++ {
		th.Fail("10.9.9."+strconv.Itoa(i), huge+strconv.Itoa(i))
	}
	if grew := int64(testenv.HeapInUse()) - int64(before); grew > 1<<20 {
		t.Errorf("80 failures with 4 MiB names grew the heap by %d KiB", grew>>10)
	}
	for i := 0; i < 5000; i++ {
		th.Fail("10.1."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250), "admin")
	}
	if n := th.Keys(); n > th.MaxKeys {
		t.Errorf("%d keys held, bound %d", n, th.MaxKeys)
	}
	clock = clock.Add(16 * time.Minute)
	th.Fail("10.2.2.2", "admin") // any later failure sweeps what expired
	if n := th.Keys(); n != 3 {
		t.Errorf("after the window %d keys remain, want the newest failure's 3", n)
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

// TestLockoutCannotBeForcedOnTheOperator reproduces the lockout: wrong passwords for admin
// from many addresses must not refuse the right password from an address that has not
// failed, however long the attacker keeps at it.
func TestLockoutCannotBeForcedOnTheOperator(t *testing.T) {
	db := storetest.SQLite(t)
	s := NewService(db, NewThrottle(10, 15*time.Minute), bcrypt.MinCost)
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, "admin", "right-password", system); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ { // three rounds of ten, from three addresses
		s.SignIn(ctx, "admin", "guess-"+strconv.Itoa(i), "203.0.113."+strconv.Itoa(i%3), "")
	}
	if _, _, err := s.SignIn(ctx, "admin", "guess-again", "203.0.113.1", ""); app.ErrorCode(err) != app.ETHROTTLED {
		t.Errorf("the attacker's address after ten failures: %v, want throttled", err)
	}
	if _, _, err := s.SignIn(ctx, "admin", "right-password", "198.51.100.7", ""); err != nil {
		t.Errorf("the operator, from an address with no failures: %v", err)
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
