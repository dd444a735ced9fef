package web

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"hearth/app"
	"hearth/internal/testkit/storetest"
	"hearth/static"
)

func TestUIRequiresSignIn(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	status, hdr, _ := e.do("GET", "/vms", "", nil)
	if status != http.StatusSeeOther || hdr.Get("Location") != "/login?next=%2Fvms" {
		t.Errorf("page load: %d to %q, want 303 to /login?next=%%2Fvms", status, hdr.Get("Location"))
	}
	status, hdr, _ = e.do("GET", "/vms/list", "", map[string]string{"HX-Request": "true"})
	if status != http.StatusUnauthorized || hdr.Get("HX-Redirect") == "" {
		t.Errorf("htmx poll: %d HX-Redirect %q, want 401 with HX-Redirect", status, hdr.Get("HX-Redirect"))
	}
	e.client.Jar.SetCookies(mustURL(e.srv.URL), []*http.Cookie{{Name: sessionCookie, Value: "hss_forged"}})
	if status, _, _ := e.do("GET", "/vms", "", nil); status != http.StatusSeeOther {
		t.Errorf("forged session: %d, want 303", status)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestSignInAndOut(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	status, _, body := e.form("/login", url.Values{"name": {"admin"}, "password": {"wrong-one"}}, nil)
	if status != http.StatusUnauthorized || !strings.Contains(body, "wrong name or password") {
		t.Errorf("wrong password: %d, body has message: %v", status, strings.Contains(body, "wrong name or password"))
	}
	// An open redirect through next= is refused.
	status, hdr, _ := e.form("/login", url.Values{"name": {"admin"}, "password": {"correct-horse"}, "next": {"//evil.example/"}}, nil)
	if status != http.StatusSeeOther || hdr.Get("Location") != "/vms" {
		t.Errorf("sign in with next=//evil: %d to %q, want /vms", status, hdr.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range e.client.Jar.Cookies(mustURL(e.srv.URL)) {
		if c.Name == sessionCookie {
			session = c
		}
	}
	if session == nil {
		t.Fatal("no session cookie after sign-in")
	}
	status, _, body = e.do("GET", "/vms", "", nil)
	if status != 200 || !strings.Contains(body, `data-testid="whoami">admin<`) {
		t.Fatalf("signed-in page: %d", status)
	}
	if status, _, _ := e.form("/logout", nil, nil); status != http.StatusSeeOther {
		t.Errorf("logout: %d", status)
	}
	// The old cookie is dead server-side, not just cleared in this browser.
	e.client.Jar.SetCookies(mustURL(e.srv.URL), []*http.Cookie{{Name: sessionCookie, Value: session.Value}})
	if status, _, _ := e.do("GET", "/vms", "", nil); status != http.StatusSeeOther {
		t.Errorf("old session after logout: %d, want 303 to sign-in", status)
	}
}

func TestSessionCookieFlags(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	_, hdr, _ := e.form("/login", url.Values{"name": {"admin"}, "password": {"correct-horse"}}, nil)
	set := strings.Join(hdr.Values("Set-Cookie"), "\n")
	if !regexp.MustCompile(`hearth_session=hss_[a-z0-9]+;.*HttpOnly.*SameSite=Lax`).MatchString(set) {
		t.Errorf("session cookie flags: %s", set)
	}
	if strings.Contains(set, "Secure") {
		t.Errorf("Secure set on a plain-http server: %s", set)
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	e.signIn()
	v := url.Values{"name": {"csrf-test"}, "vcpus": {"1"}, "memory_mib": {"256"}}
	// A cross-site post is refused outright.
	if status, _, _ := e.form("/vms", v, map[string]string{"Sec-Fetch-Site": "cross-site"}); status != http.StatusForbidden {
		t.Errorf("cross-site post: %d, want 403", status)
	}
	// A client without fetch metadata must present the token from its CSRF cookie.
	if status, _, _ := e.form("/vms", v, map[string]string{"Sec-Fetch-Site": ""}); status != http.StatusBadRequest {
		t.Errorf("post without token: %d, want 400", status)
	}
	if status, _, _ := e.form("/vms", v, map[string]string{"Sec-Fetch-Site": "", "X-CSRF-Token": "wrong"}); status != http.StatusForbidden {
		t.Errorf("post with wrong token: %d, want 403", status)
	}
	var token string
	for _, c := range e.client.Jar.Cookies(mustURL(e.srv.URL)) {
		if c.Name == "hearth_csrf" {
			token = c.Value
		}
	}
	if token == "" {
		// GET a page without fetch metadata so the middleware issues the cookie.
		e.do("GET", "/vms/new", "", nil)
		for _, c := range e.client.Jar.Cookies(mustURL(e.srv.URL)) {
			if c.Name == "hearth_csrf" {
				token = c.Value
			}
		}
	}
	v.Set("_csrf", token)
	if status, _, body := e.form("/vms", v, map[string]string{"Sec-Fetch-Site": ""}); status != http.StatusSeeOther {
		t.Errorf("post with token: %d %s", status, body)
	}
	vms, _ := e.vms.List(t.Context())
	if len(vms) != 1 {
		t.Errorf("%d VMs exist, want exactly the one posted with a token", len(vms))
	}
	// HTMX requests carry the token in a header; the page puts it on <body hx-headers>.
	_, _, page := e.do("GET", "/vms", "", nil)
	if !strings.Contains(page, `hx-headers="{&#34;X-CSRF-Token&#34;: &#34;`+token+`&#34;}"`) {
		t.Errorf("page body does not carry the CSRF token for htmx")
	}
}

func TestCreateFormShowsErrors(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	e.signIn()
	status, _, body := e.form("/vms", url.Values{"name": {"Bad Name"}, "vcpus": {"x"}, "memory_mib": {"256"}, "kernel": {"relative"}}, nil)
	if status != http.StatusBadRequest {
		t.Fatalf("invalid form: %d", status)
	}
	for _, field := range []string{"name", "vcpus", "kernel"} {
		if !strings.Contains(body, `data-error-for="`+field+`"`) {
			t.Errorf("form does not show an error for %s", field)
		}
	}
	if !strings.Contains(body, `value="Bad Name"`) {
		t.Error("form lost what the operator typed")
	}
	if vms, _ := e.vms.List(t.Context()); len(vms) != 0 {
		t.Errorf("invalid form created %d VMs", len(vms))
	}
	status, hdr, _ := e.form("/vms", url.Values{"name": {"good"}, "vcpus": {"2"}, "memory_mib": {"512"}}, nil)
	if status != http.StatusSeeOther || !strings.HasPrefix(hdr.Get("Location"), "/vms/") {
		t.Fatalf("valid form: %d to %q", status, hdr.Get("Location"))
	}
	_, _, page := e.do("GET", hdr.Get("Location"), "", nil)
	if !strings.Contains(page, `data-testid="vm-name">good<`) || !strings.Contains(page, "created good (2 vCPU, 512 MiB)") {
		t.Error("VM page does not show the new VM and its audit entry")
	}
	// Same name again: a conflict, shown in the form.
	status, _, body = e.form("/vms", url.Values{"name": {"good"}, "vcpus": {"1"}, "memory_mib": {"256"}}, nil)
	if status != http.StatusConflict || !strings.Contains(body, "already exists") {
		t.Errorf("duplicate via form: %d", status)
	}
}

func TestGuestIPOverrideForm(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	e.signIn()
	v, _ := e.createVM("a")
	htmx := map[string]string{"HX-Request": "true"}
	path := "/vms/" + v.ID + "/guest-ip"

	status, hdr, body := e.form(path, url.Values{"guest_ip": {"10.1.2.3"}, "action": {"set"}}, htmx)
	if status != 200 {
		t.Fatalf("set: %d %s", status, body)
	}
	if hdr.Get("HX-Trigger") != "vm-changed" {
		t.Errorf("HX-Trigger = %q, want vm-changed so the activity list reloads", hdr.Get("HX-Trigger"))
	}
	_, _, activity := e.do("GET", "/vms/"+v.ID+"/activity", "", htmx)
	if !strings.Contains(activity, "set guest IP 10.1.2.3 (manual)") || strings.Contains(activity, "<html") {
		t.Errorf("activity fragment does not show the override")
	}
	if strings.Contains(body, "<html") || !strings.Contains(body, `id="guest-ip-panel"`) {
		t.Error("htmx answer is not just the guest-IP panel")
	}
	if !strings.Contains(body, `data-guest-ip="10.1.2.3"`) || !strings.Contains(body, `data-source="manual"`) {
		t.Errorf("panel does not show the new IP with source manual")
	}
	got, _ := e.vms.Get(t.Context(), v.ID)
	if got.GuestIP != "10.1.2.3" || got.GuestIPSource != app.SourceManual {
		t.Errorf("stored: %s (%s)", got.GuestIP, got.GuestIPSource)
	}

	for _, bad := range []string{"127.0.0.1", "not-an-ip", "10.0.0.1/8", ""} {
		status, hdr, body := e.form(path, url.Values{"guest_ip": {bad}, "action": {"set"}}, htmx)
		if status != http.StatusBadRequest || !strings.Contains(body, `data-error-for="guest_ip"`) || hdr.Get("HX-Reswap") != "outerHTML" {
			t.Errorf("bad input %q: %d, error shown: %v", bad, status, strings.Contains(body, `data-error-for="guest_ip"`))
		}
		if got, _ := e.vms.Get(t.Context(), v.ID); got.GuestIP != "10.1.2.3" {
			t.Errorf("bad input %q changed the IP to %q", bad, got.GuestIP)
		}
	}

	status, _, body = e.form(path, url.Values{"guest_ip": {"ignored"}, "action": {"clear"}}, htmx)
	if status != 200 || !strings.Contains(body, "not registered") || !strings.Contains(body, "Guest IP cleared.") {
		t.Errorf("clear: %d", status)
	}
	// Without htmx the form still works: it redirects back to the VM page.
	status, hdr, _ = e.form(path, url.Values{"guest_ip": {"10.1.2.4"}, "action": {"set"}}, nil)
	if status != http.StatusSeeOther || hdr.Get("Location") != "/vms/"+v.ID {
		t.Errorf("plain post: %d to %q", status, hdr.Get("Location"))
	}
	// The polled value fragment follows the stored value.
	_, _, frag := e.do("GET", path, "", htmx)
	if !strings.Contains(frag, `data-guest-ip="10.1.2.4"`) || !strings.Contains(frag, `hx-trigger="every 5s"`) {
		t.Errorf("polled fragment: %s", frag)
	}
}

func TestUIErrors(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	e.signIn()
	status, _, body := e.do("GET", "/vms/nope", "", nil)
	if status != 404 || !strings.Contains(body, "VM not found") || !strings.Contains(body, "<html") {
		t.Errorf("missing VM page: %d", status)
	}
	status, hdr, body := e.do("GET", "/vms/nope/guest-ip", "", map[string]string{"HX-Request": "true"})
	if status != 404 || hdr.Get("HX-Retarget") != "#flash" || strings.Contains(body, "<html") {
		t.Errorf("missing VM fragment: %d retarget %q", status, hdr.Get("HX-Retarget"))
	}
}

func TestUIDeleteAndEdit(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	e.signIn()
	v, _ := e.createVM("a")
	status, _, body := e.form("/vms/"+v.ID, url.Values{"name": {"renamed"}, "vcpus": {"3"}, "memory_mib": {"512"}}, nil)
	if status != http.StatusSeeOther {
		t.Fatalf("edit: %d %s", status, body)
	}
	if got, _ := e.vms.Get(t.Context(), v.ID); got.Name != "renamed" || got.VCPUs != 3 {
		t.Errorf("after edit: %+v", got)
	}
	status, hdr, _ := e.form("/vms/"+v.ID+"/delete", nil, map[string]string{"HX-Request": "true"})
	if status != 200 || hdr.Get("HX-Redirect") != "/vms" {
		t.Errorf("htmx delete: %d redirect %q", status, hdr.Get("HX-Redirect"))
	}
	if _, err := e.vms.Get(t.Context(), v.ID); app.ErrorCode(err) != app.ENOTFOUND {
		t.Errorf("VM still there after delete: %v", err)
	}
}

func TestStaticCaching(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	status, hdr, body := e.do("GET", static.Path("css/app.css"), "", nil)
	if status != 200 || !strings.Contains(hdr.Get("Cache-Control"), "immutable") || !strings.HasPrefix(hdr.Get("Content-Type"), "text/css") || len(body) < 1000 {
		t.Errorf("versioned css: %d %q %q, %d bytes", status, hdr.Get("Cache-Control"), hdr.Get("Content-Type"), len(body))
	}
	status, hdr, _ = e.do("GET", "/static/old/js/htmx.min.js", "", nil)
	if status != 200 || hdr.Get("Cache-Control") != "no-cache" {
		t.Errorf("stale version: %d %q", status, hdr.Get("Cache-Control"))
	}
	if status, _, _ := e.do("GET", static.Path("../embed.go"), "", nil); status != 404 {
		t.Errorf("path escape: %d", status)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/vms/abc": "/vms/abc", "": "/vms", "//evil.example": "/vms", "/\\evil.example": "/vms",
		"https://evil.example": "/vms", "vms": "/vms", "/vms?x=1": "/vms?x=1",
		"/\t/evil.example/x": "/vms", "/\n/evil.example": "/vms", "/\r\n/evil.example": "/vms", "\t//evil.example": "/vms",
		"/\x00/evil.example": "/vms", "/\x7f/evil.example": "/vms", "/\u0085/evil.example": "/vms", "/\xff": "/vms",
		"/%2F%2Fevil.example": "/vms", "/vms#frag": "/vms#frag", "/vms/a%20b": "/vms/a%20b",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzSafeNext: whatever next= holds, the redirect stays on this host, read as a browser
// would read it (tabs and newlines dropped, backslashes as slashes).
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/vms", "//evil", "/\tevil", "/\\evil", "/%09/evil", "https://x", "/a?b=c#d", "/\u3000/evil"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://hearth.test/login")
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		if got != next && got != "/vms" {
			t.Fatalf("safeNext(%q) = %q: neither the input nor home", next, got)
		}
		browser := strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/").Replace(got)
		u, err := base.Parse(browser)
		if err != nil || u.Host != "hearth.test" || u.Scheme != "https" {
			t.Fatalf("safeNext(%q) = %q, which a browser takes to %v (%v)", next, got, u, err)
		}
	})
}

// TestPlainFormRefusalShown: a lifecycle button posted without htmx that is refused shows
// the refusal on the page (it used to redirect and drop it).
func TestPlainFormRefusalShown(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t)) // a manager that runs no hypervisor: Start is refused
	e.signIn()
	v, _ := e.createVM("plain")
	status, _, body := e.form("/vms/"+v.ID+"/start", nil, nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "this manager runs no hypervisor") || !strings.Contains(body, `data-testid="vm-name"`) {
		t.Errorf("plain start refused: %d, message shown %v", status, strings.Contains(body, "runs no hypervisor"))
	}
	status, _, body = e.form("/vms/"+v.ID+"/start", nil, map[string]string{"HX-Request": "true"})
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "this manager runs no hypervisor") || strings.Contains(body, "<html") {
		t.Errorf("htmx start refused: %d", status)
	}
}
