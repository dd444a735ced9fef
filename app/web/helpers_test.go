package web

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"hearth/app"
	"hearth/app/auth"
	"hearth/app/config"
	"hearth/app/store"
	"hearth/app/vm"
	"hearth/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// env is a running web server over a real database, with an operator API token and a
// signed-in browser-like client.
type env struct {
	t       testing.TB
	db      *store.DB
	srv     *httptest.Server
	vms     *vm.Service
	dataDir string // where the VM service keeps VMs' files
	auth    *auth.Service
	token   string       // operator API token
	client  *http.Client // no redirects followed, keeps cookies
}

func newEnv(t testing.TB, db *store.DB) *env {
	t.Helper()
	if db == nil {
		db = storetest.SQLite(t)
	}
	cidrs, _ := config.ParseCIDRs(config.DefaultGuestCIDRs)
	rules := vm.Rules{CIDRs: cidrs, HostAddrs: func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("10.9.9.1")} }}
	e := &env{t: t, db: db, dataDir: t.TempDir(), auth: auth.NewService(db, auth.NewThrottle(5, time.Minute), bcrypt.MinCost)}
	e.vms = vm.NewService(db, rules, e.dataDir)
	e.srv = httptest.NewServer(New(Deps{VMs: e.vms, Auth: e.auth, Ping: db.Ping, Version: "test"}))
	t.Cleanup(e.srv.Close)
	ctx := context.Background()
	var err error
	if e.token, err = e.auth.CreateAPIToken(ctx, "test", app.Actor{Kind: app.ActorSystem}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth.CreateUser(ctx, "admin", "correct-horse", app.Actor{Kind: app.ActorSystem}); err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	e.client = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

// do sends a request with the given headers ("Authorization" etc.) and returns status,
// headers and body.
func (e *env) do(method, path, body string, hdr map[string]string) (int, http.Header, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// api sends a JSON API request with a bearer token (operator's when token is "").
func (e *env) api(method, path, body, token string) (int, string) {
	e.t.Helper()
	if token == "" {
		token = e.token
	}
	hdr := map[string]string{"Authorization": "Bearer " + token}
	if body != "" {
		hdr["Content-Type"] = "application/json"
	}
	status, _, b := e.do(method, path, body, hdr)
	return status, b
}

// signIn signs the client in through the form, as a browser would (same-origin fetch
// metadata, so CSRF is satisfied without a token).
func (e *env) signIn() {
	e.t.Helper()
	status, hdr, body := e.form("/login", url.Values{"name": {"admin"}, "password": {"correct-horse"}, "next": {"/vms"}}, nil)
	if status != http.StatusSeeOther || hdr.Get("Location") != "/vms" {
		e.t.Fatalf("sign in: %d %s %s", status, hdr.Get("Location"), body)
	}
}

// form posts a form as a same-origin browser request; extra headers may override.
func (e *env) form(path string, v url.Values, extra map[string]string) (int, http.Header, string) {
	e.t.Helper()
	hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"}
	for k, val := range extra {
		if val == "" {
			delete(hdr, k)
		} else {
			hdr[k] = val
		}
	}
	return e.do(http.MethodPost, path, v.Encode(), hdr)
}

func (e *env) createVM(name string) (*app.VM, string) {
	e.t.Helper()
	v, tok, err := e.vms.Create(context.Background(), app.VMSpec{Name: name}, app.Actor{Kind: app.ActorSystem})
	if err != nil {
		e.t.Fatal(err)
	}
	return v, tok
}

func (e *env) auditCount(vmID string) int {
	e.t.Helper()
	log, err := e.db.AuditLog(context.Background(), vmID, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(log)
}
