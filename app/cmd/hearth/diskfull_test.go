package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/store"
	"hearth/internal/testkit/testenv"
	"hearth/provision"
)

// call makes one API request and returns the status and the decoded body.
func call(t *testing.T, base, token, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func healthz(t *testing.T, base string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// fill writes a file until the filesystem refuses more.
func fill(t *testing.T, path string) {
	t.Helper()
	if err := fillUp(path); err != nil {
		t.Fatal(err)
	}
}

// fillUp writes path until its filesystem is full (ENOSPC), the last partial blocks too.
func fillUp(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				return fmt.Errorf("fill: %w", err)
			}
			break
		}
	}
	for _, n := range []int{4096, 512, 1} { // the last partial blocks
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	return nil
}

// TestDiskFull reproduces the full disk on a real one: the data dir on a 24 MiB tmpfs in a
// mount namespace of the test's own, filled to the last byte. Writes answer 507 saying the
// data directory is full (never 500), /healthz reports failing writes, nothing is lost, and
// once space is freed writes work again and the database passes integrity_check.
func TestDiskFull(t *testing.T) {
	if testenv.InOwnMountNS(t) {
		return
	}
	dataDir := t.TempDir()
	if err := syscall.Mount("tmpfs", dataDir, "tmpfs", 0, "size=24m,mode=0750"); err != nil {
		testenv.Missing(t, "tmpfs mounts (root)", err)
	}
	t.Cleanup(func() { syscall.Unmount(dataDir, syscall.MNT_DETACH) })
	m, _ := startMain(t, map[string]string{"HEARTH_DATA_DIR": dataDir, "HEARTH_ADMIN_PASSWORD": "disk-full-pw"})
	base := m.URL()
	token, err := m.Auth.CreateAPIToken(context.Background(), "full", cliActor)
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := call(t, base, token, "POST", "/v1/vms", `{"name":"before","provision":false}`); status != 201 {
		t.Fatalf("create before the disk is full: %d", status)
	}
	// A signed-in browser session, made while there is room.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := func(path string, v url.Values) (int, string) {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, _ := form("/login", url.Values{"name": {"admin"}, "password": {"disk-full-pw"}}); status != http.StatusSeeOther {
		t.Fatalf("sign in: %d", status)
	}

	fill(t, filepath.Join(dataDir, "filler"))
	if status, h := healthz(t, base); status != 503 || !strings.Contains(fmt.Sprint(h["writes"]), "the data directory is full") {
		t.Errorf("/healthz on a full disk: %d %v", status, h)
	}
	// SQLite may still fit a few writes into its WAL; keep writing until one is refused.
	// Every answer is a success or a clear 507, never "internal error".
	created, refused := 0, 0
	for i := 0; i < 2000 && refused == 0; i++ {
		status, body := call(t, base, token, "POST", "/v1/vms", fmt.Sprintf(`{"name":"full-%d","provision":false}`, i))
		switch {
		case status == 201:
			created++
		case status == http.StatusInsufficientStorage && strings.Contains(fmt.Sprint(body["error"]), "the data directory is full"):
			refused++
		default:
			t.Fatalf("create %d on a full disk: %d %v", i, status, body)
		}
	}
	if refused == 0 {
		t.Fatalf("%d creates on a full disk, none refused", created)
	}
	status, page := form("/vms", url.Values{"name": {"from-form"}, "vcpus": {"1"}, "memory_mib": {"256"}})
	if status != http.StatusInsufficientStorage || !strings.Contains(page, "the data directory is full") {
		t.Errorf("the UI's create on a full disk: %d", status)
	}
	// A seed written into the full data dir fails as a full disk too, not as an internal error.
	key, _ := provision.LoadOrCreateManagerKey(dataDir)
	sealKey, _ := provision.LoadOrCreateSealKey(dataDir)
	prov := &provision.Provisioner{PublicURL: "http://10.0.0.1:8080", ManagerKey: key, SealKey: sealKey,
		Agent: func(string) ([]byte, error) { return bytes.Repeat([]byte("a"), 4<<20), nil }}
	v := &app.VM{ID: "fullseedvm000001", Name: "full-seed"}
	sealed, _ := prov.Prepare(v, "hrg_0123456789abcdef0123")
	if err := prov.Render(app.FilesOf(dataDir, v.ID).RunSeed(), v, sealed); !app.NoSpace(err) {
		t.Errorf("a seed written on a full disk: %v", err)
	}
	t.Logf("on the full disk: %d creates fitted, then refused with 507", created)

	os.Remove(filepath.Join(dataDir, "filler"))
	time.Sleep(probeEvery + 100*time.Millisecond) // the probe's result is kept that long
	if status, h := healthz(t, base); status != 200 {
		t.Errorf("/healthz after freeing space: %d %v", status, h)
	}
	if status, body := call(t, base, token, "POST", "/v1/vms", `{"name":"after","provision":false}`); status != 201 {
		t.Errorf("create after freeing space: %d %v", status, body)
	}
	_, list := call(t, base, token, "GET", "/v1/vms", "")
	if total, _ := list["total"].(float64); int(total) != created+2 {
		t.Errorf("%v VMs listed, want %d: before, the %d that fitted, after", list["total"], created+2, created)
	}
	m.Close()
	db, err := store.OpenSQLite(context.Background(), filepath.Join(dataDir, store.SQLiteFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if check, err := db.IntegrityCheck(context.Background()); err != nil || check != "ok" {
		t.Errorf("integrity_check: %q %v", check, err)
	}
}
