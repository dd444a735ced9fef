package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"hearth/app"
	"hearth/internal/testkit/qemutest"
)

// wsViewer is one console viewer: what it has read so far.
type wsViewer struct {
	t    *testing.T
	c    *websocket.Conn
	seen []byte
}

func dialConsole(t *testing.T, url string, hdr http.Header) (*wsViewer, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &wsViewer{t: t, c: c}, resp, nil
}

// until reads binary frames until want is among the bytes read, and returns them all.
func (v *wsViewer) until(want string, within time.Duration) []byte {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for !bytes.Contains(v.seen, []byte(want)) {
		typ, b, err := v.c.Read(ctx)
		if err != nil {
			v.t.Fatalf("no %q on the console (%v); read:\n%s", want, err, v.seen)
		}
		if typ == websocket.MessageBinary {
			v.seen = append(v.seen, b...)
		}
	}
	return v.seen
}

func (v *wsViewer) typeLine(s string) {
	v.t.Helper()
	if err := v.c.Write(context.Background(), websocket.MessageBinary, []byte(s+"\n")); err != nil {
		v.t.Fatal(err)
	}
}

// closed waits for the server to end the session and returns its close reason.
func (v *wsViewer) closed(within time.Duration) (websocket.StatusCode, string) {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		if _, _, err := v.c.Read(ctx); err != nil {
			var ce websocket.CloseError
			if ok := asClose(err, &ce); ok {
				return ce.Code, ce.Reason
			}
			return -1, err.Error()
		}
	}
}

func asClose(err error, ce *websocket.CloseError) bool {
	code := websocket.CloseStatus(err)
	if code == -1 {
		return false
	}
	*ce = websocket.CloseError{Code: code, Reason: err.Error()}
	return true
}

// marker is a random token the guest's shell prints joined from two halves, so that the
// echo of the typed line never contains it.
func marker(prefix string) (typed, printed string) {
	b := make([]byte, 4)
	rand.Read(b)
	x := hex.EncodeToString(b)
	return "echo " + prefix + x[:4] + "''" + x[4:], prefix + x
}

// TestConsoleOverWebSocket: a real QEMU guest with a shell on ttyS0, driven through
// GET /v1/vms/{id}/console. Two viewers see the same bytes; a signed-in operator's page
// origin works and every other way in is refused; the bound on viewers holds; opening and
// closing are audited; the manager restarts and a viewer who reconnects gets the history
// and a live shell; a silent viewer is cut off after HEARTH_CONSOLE_IDLE.
func TestConsoleOverWebSocket(t *testing.T) {
	qemutest.QEMU(t)
	kernel, mods := qemutest.Kernel(t)
	initrd := qemutest.InitramfsWith(t, mods, qemutest.ShellInit, nil)
	env := map[string]string{"HEARTH_HYPERVISOR": "qemu", "HEARTH_ADMIN_PASSWORD": "console-pw-1", "HEARTH_DATA_DIR": t.TempDir()}
	m, _ := startMain(t, env)
	ctx := t.Context()
	token, err := m.Auth.CreateAPIToken(ctx, "console", cliActor)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"name": "console-guest", "kernel": kernel, "initrd": initrd, "provision": false,
		"boot_args": "console=ttyS0 panic=-1 rdinit=/init", "memory_mib": 256})
	status, vm := call(t, m.URL(), token, "POST", "/v1/vms", string(body))
	if status != 201 {
		t.Fatalf("create: %d %v", status, vm)
	}
	id := vm["id"].(string)
	t.Cleanup(func() { exec.Command("pkill", "-KILL", "-f", "hearth-"+id).Run() })
	ws := "ws" + strings.TrimPrefix(m.URL(), "http")
	bearer := http.Header{"Authorization": {"Bearer " + token}}
	// Before the VM runs there is no console: a clear refusal, not an upgrade.
	if _, resp, err := dialConsole(t, ws+"/v1/vms/"+id+"/console", bearer); err == nil || resp == nil || resp.StatusCode != http.StatusConflict {
		t.Errorf("console of a VM never started: %v %v", resp, err)
	}
	if status, out := call(t, m.URL(), token, "POST", "/v1/vms/"+id+"/start", ""); status != 200 {
		t.Fatalf("start: %d %v", status, out)
	}
	a, _, err := dialConsole(t, ws+"/v1/vms/"+id+"/console", bearer)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := dialConsole(t, ws+"/v1/vms/"+id+"/console", bearer)
	if err != nil {
		t.Fatal(err)
	}
	a.until("HEARTH-MARKER: booted", 120*time.Second)
	b.until("HEARTH-MARKER: booted", 10*time.Second)
	typed, printed := marker("M-")
	a.typeLine(typed)
	gotA := a.until(printed+"\r\n", 60*time.Second)
	gotB := b.until(printed+"\r\n", 10*time.Second)
	// Each saw the whole console since it joined (a from the start, b a moment later).
	if !bytes.HasSuffix(gotA, gotB[bytes.Index(gotB, []byte("HEARTH-MARKER")):]) {
		t.Errorf("the two viewers saw different bytes:\n%q\n%q", gotA[max(0, len(gotA)-200):], gotB[max(0, len(gotB)-200):])
	}

	// The operator's page: a session and the manager's own origin.
	session, _, err := m.Auth.SignIn(ctx, "admin", "console-pw-1", "127.0.0.1", "test")
	if err != nil {
		t.Fatal(err)
	}
	own := http.Header{"Cookie": {"hearth_session=" + session}, "Origin": {m.URL()}}
	page, _, err := dialConsole(t, ws+"/vms/"+id+"/console/ws", own)
	if err != nil {
		t.Fatalf("the operator's own page: %v", err)
	}
	if got := page.until(printed, 10*time.Second); !bytes.Contains(got, []byte("HEARTH-MARKER")) {
		t.Error("a joining viewer did not get the history first")
	}
	// Refusals: each with the status that says why.
	if _, err := m.Auth.CreateUser(ctx, "bob", "console-pw-bob", cliActor); err != nil {
		t.Fatal(err)
	}
	bob, _, _ := m.Auth.SignIn(ctx, "bob", "console-pw-bob", "127.0.0.1", "test")
	db, err := sql.Open("sqlite", filepath.Join(env["HEARTH_DATA_DIR"], "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE sessions SET expires_at = ? WHERE user_id = (SELECT id FROM users WHERE name = 'bob')`, time.Now().Add(-time.Minute).UTC()); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, reg := call(t, m.URL(), token, "POST", "/v1/vms/"+id+"/registration-token", "")
	for name, c := range map[string]struct {
		url  string
		hdr  http.Header
		want int
	}{
		"cross-site page with the session": {ws + "/vms/" + id + "/console/ws", http.Header{"Cookie": {"hearth_session=" + session}, "Origin": {"http://evil.example"}}, 403},
		"no Origin with the session":       {ws + "/vms/" + id + "/console/ws", http.Header{"Cookie": {"hearth_session=" + session}}, 403},
		"no session":                       {ws + "/vms/" + id + "/console/ws", http.Header{"Origin": {m.URL()}}, 303},
		"bob's expired session":            {ws + "/vms/" + id + "/console/ws", http.Header{"Cookie": {"hearth_session=" + bob}, "Origin": {m.URL()}}, 303},
		"no token":                         {ws + "/v1/vms/" + id + "/console", nil, 401},
		"a registration token":             {ws + "/v1/vms/" + id + "/console", http.Header{"Authorization": {"Bearer " + reg["registration_token"].(string)}}, 403},
		"an agent token":                   {ws + "/v1/vms/" + id + "/console", http.Header{"Authorization": {"Bearer hag_made_up_agent_token_0123456789"}}, 401},
		"a cross-site page with a token":   {ws + "/v1/vms/" + id + "/console", http.Header{"Authorization": {"Bearer " + token}, "Origin": {"http://evil.example"}}, 403},
	} {
		_, resp, err := dialConsole(t, c.url, c.hdr)
		// 303: sent to sign in (the dialer follows the redirect to the sign-in page).
		if c.want == 303 && resp != nil && resp.Request != nil && resp.Request.URL.Path == "/login" && err != nil {
			continue
		}
		if err == nil || resp == nil || resp.StatusCode != c.want {
			code := 0
			if resp != nil {
				code = resp.StatusCode
			}
			t.Errorf("%s: %d (%v), want %d", name, code, err, c.want)
		}
	}
	// At most eight viewers of one console: three are open.
	for i := 0; i < 5; i++ {
		if _, _, err := dialConsole(t, ws+"/v1/vms/"+id+"/console", bearer); err != nil {
			t.Fatalf("viewer %d: %v", 4+i, err)
		}
	}
	if _, resp, err := dialConsole(t, ws+"/v1/vms/"+id+"/console", bearer); err == nil || resp == nil || resp.StatusCode != http.StatusConflict {
		t.Errorf("a ninth viewer: %v %v", resp, err)
	}

	// The manager restarts: the viewers are told, QEMU runs on, the next manager attaches.
	m.Close()
	if code, why := a.closed(10 * time.Second); code != websocket.StatusGoingAway {
		t.Errorf("a viewer when the manager stopped: %d %s", code, why)
	}
	m2, _ := startMain(t, env)
	d, _, err := dialConsole(t, ws2(m2.URL())+"/v1/vms/"+id+"/console", bearer)
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	d.until(printed, 10*time.Second) // the history from before the restart
	typed2, printed2 := marker("AGAIN-")
	d.typeLine(typed2)
	d.until(printed2+"\r\n", 60*time.Second)

	d.c.Close(websocket.StatusNormalClosure, "")

	// A viewer who types nothing is cut off after HEARTH_CONSOLE_IDLE: 10 s on a third
	// manager (the viewers above wait for a guest under emulation longer than that).
	m2.Close()
	env["HEARTH_CONSOLE_IDLE"] = "10s"
	m3, _ := startMain(t, env)
	idle, _, err := dialConsole(t, ws2(m3.URL())+"/v1/vms/"+id+"/console", bearer)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, why := idle.closed(30 * time.Second)
	if code != websocket.StatusPolicyViolation || !strings.Contains(why, "idle") {
		t.Errorf("a silent viewer: %d %s after %.0f s", code, why, time.Since(start).Seconds())
	}
	t.Logf("a silent viewer was cut off after %.1f s (HEARTH_CONSOLE_IDLE=10s)", time.Since(start).Seconds())

	// Who opened it, from where, and for how long; never what was typed.
	deadline := time.Now().Add(5 * time.Second)
	var entries []app.AuditEntry
	for time.Now().Before(deadline) {
		entries, _ = m3.VMs.AuditLog(ctx, id, 200)
		closedN := 0
		for _, e := range entries {
			if e.Action == app.AuditConsole && strings.Contains(e.Detail, "closed the console after") {
				closedN++
			}
		}
		if closedN >= 2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	opened, closed := 0, 0
	for _, e := range entries {
		if e.Action != app.AuditConsole {
			continue
		}
		if strings.Contains(e.Detail, printed[2:]) || strings.Contains(e.Detail, "echo") {
			t.Errorf("input in the audit log: %+v", e)
		}
		switch {
		case strings.Contains(e.Detail, "opened"):
			opened++
			if e.Addr == "" || !strings.Contains(e.Actor, "console") && !strings.Contains(e.Actor, "admin") {
				t.Errorf("an opening without who or where: %+v", e)
			}
		case strings.Contains(e.Detail, "closed the console after"):
			closed++
		}
	}
	if opened < 10 || closed < 2 {
		t.Errorf("audit: %d openings, %d closings: %+v", opened, closed, entries)
	}
}

func ws2(base string) string { return "ws" + strings.TrimPrefix(base, "http") }
