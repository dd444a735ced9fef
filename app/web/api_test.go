package web

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/storetest"
)

type apiError struct {
	Error struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Fields  map[string]string `json:"fields"`
	} `json:"error"`
}

func decodeErr(t *testing.T, body string) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code == "" {
		t.Fatalf("error body is not {\"error\":{code,message}}: %q", body)
	}
	return e
}

func TestAPIAuth(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	_, regToken := e.createVM("a")
	tests := []struct {
		name, auth string
		status     int
		code       string
	}{
		{"missing", "", 401, app.EUNAUTHORIZED},
		{"basic scheme", "Basic YTpi", 401, app.EUNAUTHORIZED},
		{"empty bearer", "Bearer ", 401, app.EUNAUTHORIZED},
		{"unknown token", "Bearer hth_nope", 401, app.EUNAUTHORIZED},
		{"registration token on list", "Bearer " + regToken, 403, app.EFORBIDDEN},
		{"operator", "Bearer " + e.token, 200, ""},
		{"scheme is case-insensitive", "bearer " + e.token, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.auth != "" {
				hdr["Authorization"] = tt.auth
			}
			status, h, body := e.do("GET", "/v1/vms", "", hdr)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if tt.code != "" && decodeErr(t, body).Error.Code != tt.code {
				t.Errorf("code %s, want %s", decodeErr(t, body).Error.Code, tt.code)
			}
			if status == 401 && h.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestAPICreateVM(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	status, body := e.api("POST", "/v1/vms", `{"name":"web-1","kernel":"/img/vmlinux"}`, "")
	if status != 201 {
		t.Fatalf("create: %d %s", status, body)
	}
	var got vmJSON
	json.Unmarshal([]byte(body), &got)
	if got.Name != "web-1" || got.VCPUs != 1 || got.MemoryMiB != 256 || got.State != "defined" || got.Kernel != "/img/vmlinux" {
		t.Errorf("created VM: %+v", got)
	}
	if got.GuestIP != nil || got.GuestIPSource != nil || got.GuestIPUpdatedAt != nil {
		t.Errorf("new VM has a guest IP: %s", body)
	}
	if !strings.HasPrefix(got.RegistrationToken, app.PrefixRegistrationToken) {
		t.Errorf("create does not return the registration token: %s", body)
	}
	// The token is shown once: a later GET does not carry it.
	_, body = e.api("GET", "/v1/vms/"+got.ID, "", "")
	if strings.Contains(body, "registration_token") || !strings.Contains(body, `"guest_ip":null`) {
		t.Errorf("GET body: %s", body)
	}

	big := `{"name":"` + strings.Repeat("x", 70<<10) + `"}`
	tests := []struct {
		name, body, ctype string
		status            int
		code, msgPart     string
	}{
		{"missing name", `{}`, "", 400, app.EINVALID, "name: is required"},
		{"bad name", `{"name":"Web_1"}`, "", 400, app.EINVALID, "name:"},
		{"duplicate", `{"name":"web-1"}`, "", 409, app.ECONFLICT, "already exists"},
		{"unknown field", `{"name":"x","color":"red"}`, "", 400, app.EINVALID, `unknown field "color"`},
		{"wrong type", `{"name":"x","vcpus":"two"}`, "", 400, app.EINVALID, "vcpus must be a number"},
		{"zero vcpus", `{"name":"x","vcpus":0}`, "", 400, app.EINVALID, "positive"},
		{"too many vcpus", `{"name":"x","vcpus":1000}`, "", 400, app.EINVALID, "vcpus: must be between"},
		{"relative kernel", `{"name":"x","kernel":"vmlinux"}`, "", 400, app.EINVALID, "kernel: must be an absolute path"},
		{"malformed", `{"name":`, "", 400, app.EINVALID, "malformed JSON"},
		{"not an object", `[1,2]`, "", 400, app.EINVALID, "JSON object"},
		{"trailing data", `{"name":"x"} {"name":"y"}`, "", 400, app.EINVALID, "after the JSON object"},
		{"empty body", ` `, "", 400, app.EINVALID, "empty"},
		{"text/plain", `{"name":"x"}`, "text/plain", 415, app.EUNSUPPORTED, "application/json"},
		{"too large", big, "", 413, app.ETOOLARGE, "larger than 64 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctype := tt.ctype
			if ctype == "" {
				ctype = "application/json; charset=utf-8"
			}
			status, _, body := e.do("POST", "/v1/vms", tt.body, map[string]string{"Authorization": "Bearer " + e.token, "Content-Type": ctype})
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			er := decodeErr(t, body)
			if er.Error.Code != tt.code || !strings.Contains(er.Error.Message, tt.msgPart) {
				t.Errorf("error %+v, want code %s with %q", er.Error, tt.code, tt.msgPart)
			}
		})
	}
	_, body = e.api("GET", "/v1/vms", "", "")
	if n := strings.Count(body, `"id"`); n != 1 {
		t.Errorf("after refused creates there are %d VMs, want 1", n)
	}
}

func TestAPIGetUpdateDelete(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	v, _ := e.createVM("a")
	if status, body := e.api("GET", "/v1/vms/nope", "", ""); status != 404 || decodeErr(t, body).Error.Code != app.ENOTFOUND {
		t.Errorf("get missing: %d %s", status, body)
	}
	status, body := e.api("PATCH", "/v1/vms/"+v.ID, `{"vcpus":2,"boot_args":"console=ttyS0"}`, "")
	if status != 200 || !strings.Contains(body, `"vcpus":2`) || !strings.Contains(body, `"name":"a"`) {
		t.Errorf("patch: %d %s", status, body)
	}
	if status, body := e.api("PATCH", "/v1/vms/"+v.ID, `{"memory_mib":1}`, ""); status != 400 {
		t.Errorf("patch invalid: %d %s", status, body)
	}
	if status, _ := e.api("PATCH", "/v1/vms/nope", `{"vcpus":2}`, ""); status != 404 {
		t.Errorf("patch missing: %d", status)
	}
	if status, body := e.api("PATCH", "/v1/vms/"+v.ID, `{"guest_ip":"10.0.0.1"}`, ""); status != 400 || !strings.Contains(body, "unknown field") {
		t.Errorf("patch guest_ip (has its own endpoint): %d %s", status, body)
	}
	e.db.SetVMState(t.Context(), v.ID, app.VMRunning, nil)
	if status, body := e.api("DELETE", "/v1/vms/"+v.ID, "", ""); status != 409 {
		t.Errorf("delete running: %d %s", status, body)
	}
	e.db.SetVMState(t.Context(), v.ID, app.VMStopped, nil)
	if status, body := e.api("DELETE", "/v1/vms/"+v.ID, "", ""); status != 204 {
		t.Errorf("delete: %d %s", status, body)
	}
	if status, _ := e.api("DELETE", "/v1/vms/"+v.ID, "", ""); status != 404 {
		t.Errorf("second delete: %d", status)
	}
	if status, body := e.api("GET", "/v1/nothing-here", "", ""); status != 404 || decodeErr(t, body).Error.Code != app.ENOTFOUND {
		t.Errorf("unknown API path: %d %s", status, body)
	}
}

// TestAPIGuestIP checks the seed document's callback contract, on both databases: what
// is accepted, with which source, and that every bad input is refused with its status and
// changes nothing — not the VM, not the audit log.
func TestAPIGuestIP(t *testing.T) {
	storetest.EachDB(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		a, tokA := e.createVM("a")
		b, tokB := e.createVM("b")
		path := "/v1/vms/" + a.ID + "/guest-ip"

		// The seed document's curl: registration token, {"guest_ip": "…"}.
		status, body := e.api("POST", path, `{"guest_ip": "192.168.1.100"}`, tokA)
		if status != 200 || !strings.Contains(body, `"guest_ip":"192.168.1.100"`) || !strings.Contains(body, `"guest_ip_source":"callback"`) {
			t.Fatalf("callback: %d %s", status, body)
		}
		before, _ := e.vms.Get(t.Context(), a.ID)
		audits := e.auditCount(a.ID)

		big := `{"guest_ip":"10.0.0.5","pad":"` + strings.Repeat("x", 65<<10) + `"}`
		bad := []struct {
			name, body, token, ctype, path string
			status                         int
			msgPart                        string
		}{
			{name: "loopback", body: `{"guest_ip":"127.0.0.1"}`, status: 400, msgPart: "loopback"},
			{name: "ipv6 loopback", body: `{"guest_ip":"::1"}`, status: 400, msgPart: "loopback"},
			{name: "link-local", body: `{"guest_ip":"169.254.1.1"}`, status: 400, msgPart: "link-local"},
			{name: "multicast", body: `{"guest_ip":"239.1.1.1"}`, status: 400, msgPart: "multicast"},
			{name: "unspecified", body: `{"guest_ip":"0.0.0.0"}`, status: 400, msgPart: "unspecified"},
			{name: "broadcast", body: `{"guest_ip":"255.255.255.255"}`, status: 400, msgPart: "broadcast"},
			{name: "outside cidrs", body: `{"guest_ip":"8.8.8.8"}`, status: 400, msgPart: "outside the guest networks"},
			{name: "host's own", body: `{"guest_ip":"10.9.9.1"}`, status: 400, msgPart: "address of this host"},
			{name: "with port", body: `{"guest_ip":"10.0.0.5:22"}`, status: 400, msgPart: "without a port"},
			{name: "with prefix", body: `{"guest_ip":"10.0.0.5/24"}`, status: 400, msgPart: "without a prefix"},
			{name: "with zone", body: `{"guest_ip":"fd00::5%eth0"}`, status: 400, msgPart: "without a zone"},
			{name: "hostname", body: `{"guest_ip":"vm.local"}`, status: 400, msgPart: "not an IPv4 or IPv6"},
			{name: "number", body: `{"guest_ip":10}`, status: 400, msgPart: "string or null"},
			{name: "missing field", body: `{}`, status: 400, msgPart: "guest_ip is required"},
			{name: "unknown field", body: `{"guest_ip":"10.0.0.5","ip":"x"}`, status: 400, msgPart: `unknown field "ip"`},
			{name: "guest claims manual", body: `{"guest_ip":"10.0.0.5","source":"manual"}`, status: 400, msgPart: "callback"},
			{name: "operator sends source", body: `{"guest_ip":"10.0.0.5","source":"agent"}`, token: "operator", status: 400, msgPart: "only for guests"},
			{name: "malformed", body: `{"guest_ip":`, status: 400, msgPart: "malformed"},
			{name: "form body", body: `guest_ip=10.0.0.5`, ctype: "application/x-www-form-urlencoded", status: 415, msgPart: "application/json"},
			{name: "too large", body: big, status: 413, msgPart: "larger than"},
			{name: "no token", body: `{"guest_ip":"10.0.0.5"}`, token: "none", status: 401, msgPart: "Authorization"},
			{name: "unknown token", body: `{"guest_ip":"10.0.0.5"}`, token: "hrg_forged", status: 401, msgPart: "unknown token"},
			{name: "another VM's token", body: `{"guest_ip":"10.0.0.5"}`, token: tokB, status: 403, msgPart: "another VM"},
			{name: "unknown VM", body: `{"guest_ip":"10.0.0.5"}`, token: "operator", path: "/v1/vms/nope/guest-ip", status: 404, msgPart: "not found"},
		}
		for _, tt := range bad {
			t.Run(tt.name, func(t *testing.T) {
				hdr := map[string]string{"Content-Type": "application/json"}
				switch tt.token {
				case "":
					hdr["Authorization"] = "Bearer " + tokA
				case "operator":
					hdr["Authorization"] = "Bearer " + e.token
				case "none":
				default:
					hdr["Authorization"] = "Bearer " + tt.token
				}
				if tt.ctype != "" {
					hdr["Content-Type"] = tt.ctype
				}
				p := path
				if tt.path != "" {
					p = tt.path
				}
				status, _, body := e.do("POST", p, tt.body, hdr)
				if status != tt.status {
					t.Fatalf("status %d, want %d: %s", status, tt.status, body)
				}
				if er := decodeErr(t, body); !strings.Contains(er.Error.Message, tt.msgPart) {
					t.Errorf("message %q, want it to contain %q", er.Error.Message, tt.msgPart)
				}
				after, _ := e.vms.Get(t.Context(), a.ID)
				if after.GuestIP != before.GuestIP || after.GuestIPSource != before.GuestIPSource || !after.GuestIPUpdatedAt.Equal(before.GuestIPUpdatedAt) {
					t.Errorf("refused request changed the VM: %s (%s) at %v", after.GuestIP, after.GuestIPSource, after.GuestIPUpdatedAt)
				}
				if n := e.auditCount(a.ID); n != audits {
					t.Errorf("refused request wrote the audit log: %d entries, had %d", n, audits)
				}
			})
		}
		// B's token still works for B, and A's did not touch B.
		if status, body := e.api("POST", "/v1/vms/"+b.ID+"/guest-ip", `{"guest_ip":"10.0.0.6","source":"agent"}`, tokB); status != 200 || !strings.Contains(body, `"guest_ip_source":"agent"`) {
			t.Errorf("agent registration: %d %s", status, body)
		}
		// Operators set manually; null and "" both clear.
		if status, body := e.api("POST", path, `{"guest_ip":"fd00::42"}`, ""); status != 200 || !strings.Contains(body, `"guest_ip_source":"manual"`) {
			t.Errorf("operator set: %d %s", status, body)
		}
		// The guest's own registrations (a clear included) are remembered beneath the
		// operator's value but do not replace it.
		for _, clear := range []string{`{"guest_ip":null}`, `{"guest_ip":""}`} {
			status, body := e.api("POST", path, clear, tokA)
			if status != 200 || !strings.Contains(body, `"guest_ip":"fd00::42"`) || !strings.Contains(body, `"guest_ip_source":"manual"`) {
				t.Errorf("guest clear under a manual value, %s: %d %s", clear, status, body)
			}
		}
		if status, body := e.api("POST", path, `{"guest_ip":"192.168.1.101"}`, tokA); status != 200 || !strings.Contains(body, `"guest_ip":"fd00::42"`) {
			t.Errorf("guest registration under a manual value: %d %s", status, body)
		}
		// Clearing the manual value falls back to what the guest registered last; clearing
		// again forgets it. null and "" both clear.
		if status, body := e.api("POST", path, `{"guest_ip":null}`, ""); status != 200 || !strings.Contains(body, `"guest_ip":"192.168.1.101"`) || !strings.Contains(body, `"guest_ip_source":"callback"`) {
			t.Errorf("operator clear: %d %s", status, body)
		}
		if status, body := e.api("POST", path, `{"guest_ip":""}`, ""); status != 200 || !strings.Contains(body, `"guest_ip":null`) || !strings.Contains(body, `"guest_ip_source":null`) {
			t.Errorf("second operator clear: %d %s", status, body)
		}
		// The registration token is good for guest-ip only.
		if status, _ := e.api("PATCH", "/v1/vms/"+a.ID, `{"vcpus":2}`, tokA); status != 403 {
			t.Errorf("registration token on PATCH: %d, want 403", status)
		}
	})
}

func TestHealthz(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	status, _, body := e.do("GET", "/healthz", "", nil)
	if status != http.StatusOK || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("healthz: %d %s", status, body)
	}
	e.db.Close()
	if status, _, _ := e.do("GET", "/healthz", "", nil); status != http.StatusServiceUnavailable {
		t.Errorf("healthz with the database closed: %d, want 503", status)
	}
}

func TestInternalErrorsAreMasked(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	token := e.token
	e.db.Close() // every query now fails inside the store
	status, hdr, body := e.do("GET", "/v1/vms", "", map[string]string{"Authorization": "Bearer " + token})
	if status != 500 {
		t.Fatalf("status %d: %s", status, body)
	}
	er := decodeErr(t, body)
	rid := hdr.Get("X-Request-Id")
	if er.Error.Code != app.EINTERNAL || er.Error.Message != "internal error (request id "+rid+")" {
		t.Errorf("500 body %+v (request id %s)", er.Error, rid)
	}
	if strings.Contains(body, "sql") || strings.Contains(body, "closed") {
		t.Errorf("internals leaked: %s", body)
	}
}
