package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"hearth/internal/testkit/storetest"
)

// FuzzGuestIPCallback throws arbitrary bodies at the guest's callback, through the whole
// request path (auth, strict JSON, rules, store). The manager must never answer 5xx, and
// anything but 200 must leave the VM exactly as it was.
func FuzzGuestIPCallback(f *testing.F) {
	for _, s := range []string{`{"guest_ip":"10.0.0.5"}`, `{"guest_ip":null}`, `{"guest_ip":""}`, `{"guest_ip":"::1"}`,
		`{"guest_ip":"10.0.0.5","source":"agent"}`, `{"guest_ip":1e999}`, `{"guest_ip":"\u0000"}`, `[]`, `{`, `{"guest_ip":"fd00::1%25x"}`} {
		f.Add(s)
	}
	e := newEnv(f, storetest.SQLite(f))
	v, tok := e.createVM("fuzz")
	h := e.srv.Config.Handler
	f.Fuzz(func(t *testing.T, body string) {
		before, err := e.vms.Get(t.Context(), v.ID)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/vms/"+v.ID+"/guest-ip", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("body %q: status %d: %s", body, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK {
			after, _ := e.vms.Get(t.Context(), v.ID)
			if after.GuestIP != before.GuestIP || !after.GuestIPUpdatedAt.Equal(before.GuestIPUpdatedAt) {
				t.Fatalf("body %q refused with %d but changed the VM", body, rec.Code)
			}
		}
	})
}
