package server

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"hearth/guest/collect"
)

// fakeClock records what PUT /clock would set, instead of setting the test machine's clock.
func fakeClock(t *testing.T, fail error) *[]time.Time {
	t.Helper()
	var set []time.Time
	old := setClock
	setClock = func(at time.Time) error {
		if fail != nil {
			return fail
		}
		set = append(set, at)
		return nil
	}
	t.Cleanup(func() { setClock = old })
	return &set
}

func putClock(t *testing.T, url, tok, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", url+"/clock", strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestClock: PUT /clock steps the clock forward to the manager's time, only with the
// agent's token (an agent without one refuses it), only forward, and not for an offset
// within the tolerance; bad bodies are refused with what is wanted.
func TestClock(t *testing.T) {
	set := fakeClock(t, nil)
	open, _ := newServer(t, Options{})
	if status, body := putClock(t, open.URL, token, fmt.Sprintf(`{"unix_nano": %d}`, time.Now().Add(time.Hour).UnixNano())); status != 403 || !strings.Contains(body, "no token") {
		t.Errorf("an agent without a token: %d %s", status, body)
	}
	srv, _ := newServer(t, Options{Token: token})
	ahead := time.Now().Add(90 * time.Second)
	if status, _ := putClock(t, srv.URL, "", fmt.Sprintf(`{"unix_nano": %d}`, ahead.UnixNano())); status != 401 {
		t.Errorf("without the token: %d", status)
	}
	if status, _ := putClock(t, srv.URL, "hag_wrong_wrong_wrong", fmt.Sprintf(`{"unix_nano": %d}`, ahead.UnixNano())); status != 401 {
		t.Errorf("with a wrong token: %d", status)
	}
	if len(*set) != 0 {
		t.Fatalf("the clock was set without the token: %v", *set)
	}
	status, body := putClock(t, srv.URL, token, fmt.Sprintf(`{"unix_nano": %d}`, ahead.UnixNano()))
	if status != 200 || !strings.Contains(body, `"stepped":true`) || len(*set) != 1 || !(*set)[0].Equal(ahead) {
		t.Errorf("a clock 90 s behind: %d %s, set %v", status, body, *set)
	}
	if !strings.Contains(body, `"offset_seconds":89.`) && !strings.Contains(body, `"offset_seconds":90`) {
		t.Errorf("offset: %s", body)
	}
	if status, body := putClock(t, srv.URL, token, fmt.Sprintf(`{"unix_nano": %d}`, time.Now().Add(100*time.Millisecond).UnixNano())); status != 200 || !strings.Contains(body, `"stepped":false`) {
		t.Errorf("within the tolerance: %d %s", status, body)
	}
	if status, body := putClock(t, srv.URL, token, fmt.Sprintf(`{"unix_nano": %d}`, time.Now().Add(-time.Hour).UnixNano())); status != 409 || !strings.Contains(body, "only steps it forward") {
		t.Errorf("a clock ahead of the manager's: %d %s", status, body)
	}
	for _, bad := range []string{``, `{}x`, `{"unix_nano": "soon"}`, `{"unix_nano": 1, "zone": "x"}`, `{"unix_nano": 1000}`, `[]`,
		`{"unix_nano": 1}{"unix_nano": 2}`, strings.Repeat(" ", 2000) + `{"unix_nano": 1}`} {
		if status, body := putClock(t, srv.URL, token, bad); status != 400 {
			t.Errorf("body %.40q: %d %s", bad, status, body)
		}
	}
	if len(*set) != 1 {
		t.Errorf("the clock was set by refused requests: %v", *set)
	}
	if resp, _ := get(t, srv.URL+"/clock", nil); resp.StatusCode != 405 || resp.Header.Get("Allow") != "PUT" {
		t.Errorf("GET /clock: %d %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestClockNotPermitted: an agent that may not set the clock says why.
func TestClockNotPermitted(t *testing.T) {
	fakeClock(t, syscall.EPERM)
	srv, _ := newServer(t, Options{Token: token})
	status, body := putClock(t, srv.URL, token, fmt.Sprintf(`{"unix_nano": %d}`, time.Now().Add(time.Minute).UnixNano()))
	if status != 500 || !strings.Contains(body, "CAP_SYS_TIME") {
		t.Errorf("EPERM: %d %s", status, body)
	}
}

// FuzzClock: any body gets an answer (200, 400 or 409), never a panic, and the clock is set
// only for a well-formed time after 2024.
func FuzzClock(f *testing.F) {
	for _, s := range []string{`{"unix_nano": 1800000000000000000}`, `{"unix_nano": -1}`, `{`, `null`, `{"unix_nano": 1e30}`} {
		f.Add(s)
	}
	var set int
	old := setClock
	setClock = func(time.Time) error { set++; return nil }
	defer func() { setClock = old }()
	h := New(collect.NewSampler(collect.NewReader(), time.Second, "t"), Options{Token: token})
	f.Fuzz(func(t *testing.T, body string) {
		before := set
		req := httptest.NewRequest("PUT", "/clock", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case 200, 409:
		case 400:
			if set != before {
				t.Errorf("a refused body set the clock: %q", body)
			}
		default:
			t.Errorf("%q: %d %s", body, w.Code, w.Body)
		}
	})
}
