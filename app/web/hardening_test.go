package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"hearth/app"
	"hearth/internal/testkit/storetest"
)

// TestLogoutAuditsOnlyEndedSessions reproduces the audit flood: POST /logout with made-up
// cookies (or none) writes nothing; ending a real session writes one entry.
func TestLogoutAuditsOnlyEndedSessions(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	before := e.auditCount("")
	for i := 0; i < 300; i++ {
		e.client.Jar.SetCookies(mustURL(e.srv.URL), []*http.Cookie{{Name: sessionCookie, Value: "hss_made_up_" + strings.Repeat("x", i%7)}})
		if status, _, _ := e.form("/logout", nil, nil); status != http.StatusSeeOther {
			t.Fatalf("logout with a made-up cookie: %d", status)
		}
	}
	if n := e.auditCount(""); n != before {
		t.Errorf("300 logouts with made-up cookies wrote %d audit rows", n-before)
	}
	e.signIn()
	signedIn := e.auditCount("")
	e.form("/logout", nil, nil)
	e.form("/logout", nil, nil) // the cookie is cleared: nothing to end
	log, _ := e.db.AuditLog(t.Context(), "", 1)
	if n := e.auditCount(""); n != signedIn+1 || log[0].Action != "sign_out" {
		t.Errorf("a real logout wrote %d rows (newest %+v), want one sign_out", n-signedIn, log)
	}
}

// TestFormBodiesAreBounded reproduces the sign-in memory sink: a 4 MiB user name is refused
// with 413 before it is read, parsed, throttled or echoed back; other forms are bounded too.
func TestFormBodiesAreBounded(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	huge := strings.Repeat("n", 4<<20)
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	heapBefore := m.HeapInuse
	for i := 0; i < 20; i++ {
		status, _, body := e.form("/login", url.Values{"name": {huge}, "password": {"x"}}, nil)
		if status != http.StatusRequestEntityTooLarge || !strings.Contains(body, "larger than 8 KiB") {
			t.Fatalf("4 MiB sign-in: %d %.200s", status, body)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m)
	if grew := int64(m.HeapInuse) - int64(heapBefore); grew > 8<<20 {
		t.Errorf("20 sign-ins with 4 MiB names left the heap %d MiB larger", grew>>20)
	}
	if n := e.auth.Throttle().Keys(); n != 0 {
		t.Errorf("refused bodies reached the throttle: %d keys", n)
	}
	// A name just under the bound is an ordinary failed sign-in.
	if status, _, _ := e.form("/login", url.Values{"name": {strings.Repeat("n", 7000)}, "password": {"x"}}, nil); status != http.StatusUnauthorized {
		t.Errorf("7000-byte name: %d, want 401", status)
	}
	e.signIn()
	v, _ := e.createVM("bounded")
	status, _, _ := e.form("/vms/"+v.ID+"/guest-ip", url.Values{"guest_ip": {strings.Repeat("1", 100<<10)}}, nil)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("100 KiB guest-ip form: %d, want 413", status)
	}
}

// TestTokensPage: signed-in operators list, create and revoke API tokens; a revoked token
// is refused at once; the page never shows a token except the one just created.
func TestTokensPage(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	e.signIn()
	status, _, body := e.form("/tokens", url.Values{"name": {"grafana"}}, nil)
	m := regexp.MustCompile(`data-testid="new-token-value">(hth_[a-z0-9]+)<`).FindStringSubmatch(body)
	if status != http.StatusCreated || m == nil {
		t.Fatalf("create a token: %d, token shown: %v", status, m)
	}
	token := m[1]
	if status, _ := e.api("GET", "/v1/vms", "", token); status != 200 {
		t.Fatalf("the new token: %d", status)
	}
	status, _, body = e.do("GET", "/tokens", "", nil)
	if status != 200 || !strings.Contains(body, `data-token="grafana"`) || strings.Contains(body, "hth_") {
		t.Errorf("tokens page: %d, lists grafana %v, shows a token %v", status, strings.Contains(body, `data-token="grafana"`), strings.Contains(body, "hth_"))
	}
	if status, _, body := e.form("/tokens", url.Values{"name": {"grafana"}}, nil); status != http.StatusConflict || !strings.Contains(body, "already exists") {
		t.Errorf("a second grafana: %d", status)
	}
	if status, _, body := e.form("/tokens", url.Values{"name": {"Bad Name"}}, nil); status != http.StatusBadRequest || !strings.Contains(body, "lowercase letter") {
		t.Errorf("a bad name: %d", status)
	}
	// Revoking needs the CSRF check like every state change: a cross-site post is refused.
	if status, _, _ := e.form("/tokens/grafana/revoke", nil, map[string]string{"Sec-Fetch-Site": "cross-site"}); status != http.StatusForbidden {
		t.Errorf("cross-site revoke: %d", status)
	}
	status, hdr, _ := e.form("/tokens/grafana/revoke", nil, nil)
	if status != http.StatusSeeOther || hdr.Get("Location") != "/tokens?revoked=grafana" {
		t.Errorf("revoke: %d %s", status, hdr.Get("Location"))
	}
	if status, _ := e.api("GET", "/v1/vms", "", token); status != http.StatusUnauthorized {
		t.Errorf("the revoked token: %d, want 401", status)
	}
	if _, _, body := e.do("GET", "/tokens?revoked=grafana", "", nil); !strings.Contains(body, "Token grafana revoked") || strings.Contains(body, `data-token="grafana"`) {
		t.Error("after revoke the page does not say so, or still lists it")
	}
	if status, _, _ := e.form("/tokens/grafana/revoke", nil, nil); status != http.StatusNotFound {
		t.Errorf("revoking it again: %d", status)
	}
	log, _ := e.db.AuditLog(t.Context(), "", 3)
	if len(log) == 0 || log[0].Action != "token.revoke" || !strings.Contains(log[0].Detail, "grafana") {
		t.Errorf("audit after revoke: %+v", log)
	}
}

// TestClassifyFullDisk: a file write into a full data dir (a seed, a disk copy) is a 507
// that says so, however deep the ENOSPC is wrapped; other internal errors stay 500.
func TestClassifyFullDisk(t *testing.T) {
	full := fmt.Errorf("provision: seed: write image: %w", &os.PathError{Op: "write", Path: "/data/vms/x/.seed-1.iso", Err: syscall.ENOSPC})
	if status, code, msg := classify(full); status != http.StatusInsufficientStorage || code != app.EFULL || !strings.Contains(msg, "the data directory is full") {
		t.Errorf("classify(ENOSPC) = %d %s %q", status, code, msg)
	}
	if status, code, msg := classify(errors.New("boom")); status != 500 || code != app.EINTERNAL || msg != "internal error" {
		t.Errorf("classify(other) = %d %s %q", status, code, msg)
	}
}
