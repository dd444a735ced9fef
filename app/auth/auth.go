// Package auth signs operators in and out, keeps their sessions, and checks API tokens.
// Passwords are bcrypt-hashed; session cookies and API tokens are random and stored only as
// hashes, so a copy of the database opens no door.
package auth

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"hearth/app"
	"hearth/app/store"
)

// SessionTTL is how long a sign-in lasts.
const SessionTTL = 7 * 24 * time.Hour

// Password length limits; bcrypt reads at most 72 bytes, so longer would silently be cut.
const (
	MinPassword = 8
	MaxPassword = 72
)

var userRE = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)

// Service is sign-in, sessions and tokens over the store.
type Service struct {
	db       *store.DB
	throttle *Throttle
	cost     int
	dummy    func() []byte // a hash to compare against for unknown users, so timing reveals nothing
}

// NewService returns a Service. cost is the bcrypt cost; 0 means bcrypt.DefaultCost.
func NewService(db *store.DB, throttle *Throttle, cost int) *Service {
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	s := &Service{db: db, throttle: throttle, cost: cost, dummy: sync.OnceValue(func() []byte {
		h, _ := bcrypt.GenerateFromPassword([]byte("hearth-dummy-password"), cost)
		return h
	})}
	// Made beside the start-up, not in its way: a command that never signs anyone in
	// (token create, image import, every start of serve) does not wait a bcrypt for it.
	go s.dummy()
	return s
}

// Throttle is the sign-in throttle in use.
func (s *Service) Throttle() *Throttle { return s.throttle }

func checkPassword(pw string) error {
	switch {
	case len(pw) < MinPassword:
		return app.Invalid(map[string]string{"password": fmt.Sprintf("must be at least %d characters", MinPassword)})
	case len(pw) > MaxPassword:
		return app.Invalid(map[string]string{"password": fmt.Sprintf("must be at most %d bytes", MaxPassword)})
	}
	return nil
}

// CreateUser adds an operator.
func (s *Service) CreateUser(ctx context.Context, name, password string, by app.Actor) (*app.User, error) {
	if !userRE.MatchString(name) {
		return nil, app.Invalid(map[string]string{"name": "must be 1–32 characters: a lowercase letter, then lowercase letters, digits, '.', '_' or '-'"})
	}
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return nil, fmt.Errorf("auth: hash password: %w", err)
	}
	return s.db.CreateUser(ctx, name, string(hash), &app.AuditEntry{Actor: by.String(), Action: app.AuditUserCreate, Addr: by.Addr, Detail: "created user " + name})
}

// SetPassword changes a user's password and ends their sessions.
func (s *Service) SetPassword(ctx context.Context, name, password string, by app.Actor) error {
	if err := checkPassword(password); err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return fmt.Errorf("auth: hash password: %w", err)
	}
	return s.db.SetPassword(ctx, name, string(hash), &app.AuditEntry{Actor: by.String(), Action: app.AuditUserPasswd, Addr: by.Addr, Detail: "changed password of " + name})
}

// EnsureAdmin creates user admin on a first start with no users. With password "" it makes
// up one and returns it, to be shown once. It returns "" when nothing was created or the
// given password was used.
func (s *Service) EnsureAdmin(ctx context.Context, password string) (generated string, created bool, err error) {
	n, err := s.db.UserCount(ctx)
	if err != nil || n > 0 {
		return "", false, err
	}
	if password == "" {
		b := make([]byte, 15)
		rand.Read(b)
		password = strings.ToLower(base32.StdEncoding.EncodeToString(b))
		generated = password
	}
	if _, err := s.CreateUser(ctx, "admin", password, app.Actor{Kind: app.ActorSystem}); err != nil {
		return "", false, fmt.Errorf("auth: create admin: %w", err)
	}
	return generated, true, nil
}

// SignIn checks a name and password and, if they match, starts a session. It returns the
// session token for the cookie. Failures are throttled per address and per user name, and
// are audited; the error never says whether the user exists.
func (s *Service) SignIn(ctx context.Context, name, password, addr, userAgent string) (string, *app.User, error) {
	if wait := s.throttle.Blocked(addr, name); wait > 0 {
		return "", nil, app.Errorf(app.ETHROTTLED, "too many failed sign-ins; try again in %s", wait.Round(time.Second))
	}
	user, hash, err := s.db.UserPasswordHash(ctx, name)
	if err != nil && app.ErrorCode(err) != app.ENOTFOUND {
		return "", nil, err
	}
	if user == nil {
		hash = string(s.dummy())
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil || user == nil {
		s.throttle.Fail(addr, name)
		_ = s.db.Audit(ctx, app.AuditEntry{Actor: "user:" + clip(name), Action: app.AuditSignInFailed, Addr: addr, Detail: "wrong name or password"})
		return "", nil, app.Errorf(app.EUNAUTHORIZED, "wrong name or password")
	}
	s.throttle.Succeed(addr, name)
	token, tokenHash := app.NewToken(app.PrefixSession)
	e := &app.AuditEntry{Actor: "user:" + name, Action: app.AuditSignIn, Addr: addr, Detail: "signed in"}
	if err := s.db.CreateSession(ctx, tokenHash, user.ID, SessionTTL, addr, clip(userAgent), e); err != nil {
		return "", nil, err
	}
	return token, user, nil
}

// clip bounds what a client chose before it reaches the database.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200]
	}
	return s
}

// SessionUser returns the user of a live session token, or EUNAUTHORIZED.
func (s *Service) SessionUser(ctx context.Context, token string) (*app.User, error) {
	if !strings.HasPrefix(token, app.PrefixSession) {
		return nil, app.Errorf(app.EUNAUTHORIZED, "not signed in")
	}
	u, err := s.db.SessionUser(ctx, app.HashToken(token))
	if app.ErrorCode(err) == app.ENOTFOUND {
		return nil, app.Errorf(app.EUNAUTHORIZED, "not signed in")
	}
	return u, err
}

// SignOut ends the session of token; it is audited only if there was one to end.
func (s *Service) SignOut(ctx context.Context, token string, by app.Actor) error {
	_, err := s.db.DeleteSession(ctx, app.HashToken(token), &app.AuditEntry{Actor: by.String(), Action: app.AuditSignOut, Addr: by.Addr, Detail: "signed out"})
	return err
}

// CreateAPIToken makes a named bearer token for the JSON API and returns it; only its hash
// is stored, so this is the one time it can be seen.
func (s *Service) CreateAPIToken(ctx context.Context, name string, by app.Actor) (string, error) {
	if !userRE.MatchString(name) {
		return "", app.Invalid(map[string]string{"name": "must be 1–32 characters: a lowercase letter, then lowercase letters, digits, '.', '_' or '-'"})
	}
	token, hash := app.NewToken(app.PrefixAPIToken)
	e := &app.AuditEntry{Actor: by.String(), Action: app.AuditTokenCreate, Addr: by.Addr, Detail: "created API token " + name}
	if err := s.db.CreateAPIToken(ctx, name, hash, e); err != nil {
		return "", err
	}
	return token, nil
}

// APITokens lists the API tokens (names and use, never the tokens).
func (s *Service) APITokens(ctx context.Context) ([]app.APIToken, error) { return s.db.APITokens(ctx) }

// RevokeAPIToken deletes the named token: requests carrying it are refused from now on.
func (s *Service) RevokeAPIToken(ctx context.Context, name string, by app.Actor) error {
	return s.db.DeleteAPIToken(ctx, name, &app.AuditEntry{Actor: by.String(), Action: app.AuditTokenRevoke, Addr: by.Addr,
		Detail: "revoked API token " + app.Clip(name, 64)})
}

// APIToken returns the name of the API token token, or EUNAUTHORIZED.
func (s *Service) APIToken(ctx context.Context, token string) (string, error) {
	name, err := s.db.APITokenName(ctx, app.HashToken(token))
	if app.ErrorCode(err) == app.ENOTFOUND {
		return "", app.Errorf(app.EUNAUTHORIZED, "unknown token")
	}
	return name, err
}
