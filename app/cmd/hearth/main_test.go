package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"hearth/app/config"
	"hearth/app/store"
	"hearth/internal/testkit/qemutest"
	"hearth/internal/testkit/storetest"
	"hearth/internal/testkit/testenv"
	"hearth/provision/agents"
)

// asHearthEnv makes the test binary the real `hearth` (its main, with the arguments the
// variable holds, split at spaces): what tests run as a separate manager process that
// can be killed, in a network namespace of its own.
const asHearthEnv = "HEARTH_TEST_AS_HEARTH"

func TestMain(m *testing.M) {
	if args := os.Getenv(asHearthEnv); args != "" {
		os.Args = append([]string{"hearth"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	if dir := os.Getenv(seedWriterEnv); dir != "" {
		seedWriter(dir) // a child process of TestCrashLeftoversAreSwept; never returns
	}
	os.Exit(storetest.Main(m))
}

// noSetenv is setenv for in-process runs: the test binary's environment stays as it is.
func noSetenv(string, string) error { return nil }

// testEnv is getenv over env for the managers tests run. These tests run as root on the
// host itself, where a manager left to its defaults would make its bridge: unless env says
// otherwise, VMs get no network (HEARTH_BRIDGE_CIDR=none). TestDefaultNetwork tests the
// default inside a network namespace of its own.
func testEnv(env map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		if k == "HEARTH_BRIDGE_CIDR" {
			return "none"
		}
		return ""
	}
}

// needAgent is for tests of provisioned VMs through the manager itself, whose seeds carry the
// agent that `make guest` embeds: skip without it, fail under HEARTH_REQUIRE_ALL.
func needAgent(tb testing.TB) {
	tb.Helper()
	if _, err := agents.For(runtime.GOARCH); err != nil {
		testenv.Missing(tb, "the embedded hearth-agent (make guest, which make test runs first)", err)
	}
}

// startMain runs the real manager on a free loopback port over a fresh data dir, as `hearth
// serve` would, and stops it at cleanup.
func startMain(tb testing.TB, env map[string]string) (*Main, string) {
	tb.Helper()
	dataDir := tb.TempDir()
	all := map[string]string{"HEARTH_DATA_DIR": dataDir, "HEARTH_LISTEN": "127.0.0.1:0",
		"HEARTH_IMAGE_DIRS": strings.Join(qemutest.ImageDirs(), ",")}
	for k, v := range env {
		all[k] = v
	}
	cfg, err := config.Load(nil, testEnv(all))
	if err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	m, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler), &out)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return m, out.String()
}

func TestServeFirstStart(t *testing.T) {
	m, out := startMain(t, nil)
	if !strings.Contains(out, "Hearth is running at "+m.URL()) || !strings.Contains(out, "Created user admin with password ") {
		t.Errorf("first start output:\n%s", out)
	}
	resp, err := http.Get(m.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz: %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(m.Config.DataDir, "hearth.db")); err != nil {
		t.Errorf("no SQLite file in the data dir: %v", err)
	}
}

// TestCommands drives the subcommands as an operator would from a shell, then uses the
// printed token against a served API.
func TestCommands(t *testing.T) {
	dataDir := t.TempDir()
	getenv := testEnv(map[string]string{"HEARTH_DATA_DIR": dataDir})
	ctx := context.Background()
	runCmd := func(stdin string, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, args, getenv, noSetenv, strings.NewReader(stdin), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	if out, err := runCmd("", "migrate"); err != nil || !strings.Contains(out, "up to date") {
		t.Fatalf("migrate: %v %s", err, out)
	}
	if out, err := runCmd("a-good-password\n", "user", "create", "alice"); err != nil || !strings.Contains(out, "created user alice") {
		t.Errorf("user create: %v %s", err, out)
	}
	if _, err := runCmd("short\n", "user", "create", "bob"); err == nil || !strings.Contains(err.Error(), "at least 8") {
		t.Errorf("user create with a short password: %v", err)
	}
	if _, err := runCmd("", "user", "create", "carol"); err == nil || !strings.Contains(err.Error(), "no password on stdin") {
		t.Errorf("user create without a password: %v", err)
	}
	if out, err := runCmd("another-password\n", "user", "passwd", "alice"); err != nil || !strings.Contains(out, "changed the password") {
		t.Errorf("user passwd: %v %s", err, out)
	}
	if _, err := runCmd("another-password\n", "user", "passwd", "nobody"); err == nil {
		t.Error("passwd for a missing user succeeded")
	}
	token, err := runCmd("", "token", "create", "ci")
	if err != nil || !strings.HasPrefix(token, "hth_") {
		t.Fatalf("token create: %v %q", err, token)
	}
	if _, err := runCmd("", "token", "create", "ci"); err == nil {
		t.Error("a second token with the same name was created")
	}
	if out, err := runCmd("", "version"); err != nil || !strings.HasPrefix(out, "hearth ") {
		t.Errorf("version: %v %q", err, out)
	}
	if _, err := runCmd("", "frobnicate"); err == nil {
		t.Error("unknown command succeeded")
	}
	if _, err := runCmd("", "serve", "--guest-cidrs", "10.0.0.1/8"); err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Errorf("serve with bad cidrs: %v", err)
	}

	// The printed token works against the served API, over the same data dir.
	m, _ := startMain(t, map[string]string{"HEARTH_DATA_DIR": dataDir})
	// provision: false, so the test does not depend on whether make guest embedded agents.
	req, _ := http.NewRequest("POST", m.URL()+"/v1/vms", strings.NewReader(`{"name":"from-cli","provision":false}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 201 || body["name"] != "from-cli" {
		t.Errorf("create with CLI token: %d %v", resp.StatusCode, body)
	}

	// Listed with its last use; revoked, it stops working at once.
	if out, err := runCmd("", "token", "list"); err != nil || !regexp.MustCompile(`(?m)^ci\s+\S+\s+20\d\d-`).MatchString(out) || strings.Contains(out, "hth_") {
		t.Errorf("token list: %v\n%s", err, out)
	}
	if out, err := runCmd("", "token", "revoke", "ci"); err != nil || !strings.Contains(out, "revoked API token ci") {
		t.Errorf("token revoke: %v %s", err, out)
	}
	if _, err := runCmd("", "token", "revoke", "ci"); err == nil || !strings.Contains(err.Error(), `no API token is named "ci"`) {
		t.Errorf("revoking it again: %v", err)
	}
	req, _ = http.NewRequest("GET", m.URL()+"/v1/vms", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusUnauthorized {
		t.Errorf("a revoked token: %d, want 401", resp2.StatusCode)
	}
	if out, err := runCmd("", "token", "list"); err != nil || strings.Contains(out, "ci ") {
		t.Errorf("token list after revoke: %v\n%s", err, out)
	}
	if _, err := runCmd("", "token", "revoke"); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("revoke without a name: %v", err)
	}
}

// TestServeOnPostgres runs the manager on a real PostgreSQL database.
func TestServeOnPostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t) // empty: the manager migrates it
	m, out := startMain(t, map[string]string{"HEARTH_DATABASE_URL": dsn, "HEARTH_ADMIN_PASSWORD": "pg-admin-pw"})
	if m.DB.Dialect() != "pg" || !strings.Contains(out, "from HEARTH_ADMIN_PASSWORD") {
		t.Errorf("dialect %s, output %s", m.DB.Dialect(), out)
	}
	if strings.Contains(out, "pg-admin-pw") {
		t.Error("the admin password was printed")
	}
}

// TestFailedStartCreatesNoAdmin: a first start that cannot listen (the port is taken)
// creates nothing, so the next start still creates admin and shows its password; a manager
// listening on every interface prints a URL one can open.
func TestFailedStartCreatesNoAdmin(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dataDir := t.TempDir()
	getenv := func(listen string) func(string) string {
		return func(k string) string {
			return testEnv(map[string]string{"HEARTH_DATA_DIR": dataDir, "HEARTH_LISTEN": listen})(k)
		}
	}
	cfg, err := config.Load(nil, getenv(taken.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler), &out); err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Fatalf("start on a taken port: %v", err)
	}
	db, err := store.Open(context.Background(), "", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := db.UserCount(context.Background())
	db.Close()
	if err != nil || n != 0 {
		t.Errorf("after the failed start: %d users (%v)", n, err)
	}
	cfg, _ = config.Load(nil, getenv("0.0.0.0:0"))
	out.Reset()
	m, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler), &out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !strings.Contains(out.String(), "Created user admin with password ") || !strings.HasPrefix(m.URL(), "http://127.0.0.1:") ||
		!strings.Contains(out.String(), "on every interface") {
		t.Errorf("second start: URL %s, output:\n%s", m.URL(), out.String())
	}
}

// TestCommandLine: --help anywhere shows every flag and succeeds without touching a data
// dir; flags may come before a command's names.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // the default data dir, ./data, would be made here
	none := func(string) string { return "" }
	for _, args := range [][]string{{"--help"}, {"help"}, {"serve", "--help"}, {"user", "passwd", "--help"}, {"token", "list", "-h"}, {"migrate", "--help"}} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, none, noSetenv, strings.NewReader(""), &out, &errOut); err != nil {
			t.Errorf("%v: %v", args, err)
		}
		for _, flag := range []string{"-listen", "-metrics-interval", "-allocate-ips", "-image-dirs", "-jailer-chroot", "HEARTH_STOP_TIMEOUT"} {
			if !strings.Contains(out.String(), flag) {
				t.Errorf("%v: the usage lacks %s", args, flag)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("--help made a data dir: %v", err)
	}
	data := filepath.Join(dir, "elsewhere")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"user", "create", "--data-dir", data, "ops"}, none, noSetenv, strings.NewReader("long-enough-pw\n"), &out, io.Discard); err != nil || !strings.Contains(out.String(), "created user ops") {
		t.Errorf("flags before the name: %v %s", err, out.String())
	}
	if err := run(context.Background(), []string{"user", "create", "a", "b", "--data-dir", data}, none, noSetenv, strings.NewReader("long-enough-pw\n"), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("two names: %v", err)
	}
	if err := run(context.Background(), []string{"serve", "--stop-timeout", "30"}, none, noSetenv, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "needs a unit") {
		t.Errorf("a duration without a unit: %v", err)
	}
}
