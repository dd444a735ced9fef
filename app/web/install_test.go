package web

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/agent"
	"hearth/app/install"
	"hearth/app/store"
	"hearth/app/vm"
	"hearth/internal/testkit/installtest"
	"hearth/provision/sshinstall"
)

// installEnv is an env with real install jobs, aimed at a real sshd on loopback standing
// in for the guest (hence, for the jobs, guest-IP rules that admit loopback, which the
// real rules refuse).
func installEnv(t *testing.T) (*env, *installtest.Server, *app.VM) {
	t.Helper()
	e := newEnv(t, nil)
	srv := installtest.Start(t)
	host, _, _ := net.SplitHostPort(srv.Addr)
	v, _ := e.createVM("target")
	if err := e.db.SetRun(context.Background(), v.ID, store.Run{State: app.VMRunning, Driver: "qemu"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.SetGuestIP(context.Background(), v.ID, host, app.SourceManual, nil); err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	agentPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	root := t.TempDir()
	t.Cleanup(func() { exec.Command("pkill", "-f", "^"+root+"/usr/local/bin/hearth-agent").Run() })
	loopback := vm.NewService(e.db, vm.Rules{CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, AllowLoopback: true,
		HostAddrs: func() []netip.Addr { return nil }}, e.dataDir)
	jobs := &install.Jobs{DB: e.db, VMs: loopback, Signer: srv.Client, PublicURL: "http://10.0.0.1:8080", Root: root,
		Agent:     agent.New(agent.Options{Port: agentPort}),
		Installer: &sshinstall.Installer{Agent: func(string) ([]byte, error) { return installtest.Agent(t), nil }, HealthTimeout: 20 * time.Second}}
	e.srv.Config.Handler = New(Deps{VMs: e.vms, Auth: e.auth, Installs: jobs, Ping: e.db.Ping})
	t.Cleanup(jobs.Wait)
	return e, srv, v
}

func TestAPIAgentInstall(t *testing.T) {
	e, srv, v := installEnv(t)
	host, port, _ := net.SplitHostPort(srv.Addr)
	path := "/v1/vms/" + v.ID + "/agent/install"
	if status, body := e.api("GET", path, "", ""); status != 404 {
		t.Errorf("status before any install: %d %s", status, body)
	}
	for _, bad := range []struct {
		body string
		part string
	}{
		{`{"port":70000}`, "port"},
		{`{"user":"root","color":"red"}`, "unknown field"},
		{`{"port":"22"}`, "must be a number"},
	} {
		if status, body := e.api("POST", path, bad.body, ""); status != 400 || !strings.Contains(body, bad.part) {
			t.Errorf("body %s: %d %s", bad.body, status, body)
		}
	}
	pemJSON, _ := json.Marshal(string(srv.ClientPEM))
	status, body := e.api("POST", path, `{"user":"root","port":`+port+`,"private_key":`+string(pemJSON)+`}`, "")
	if status != 202 || !strings.Contains(body, `"state":"running"`) {
		t.Fatalf("start: %d %s", status, body)
	}
	if strings.Contains(body, "PRIVATE KEY") {
		t.Error("the private key was echoed back")
	}
	deadline := time.Now().Add(60 * time.Second)
	var job jobJSON
	for {
		status, body = e.api("GET", path, "", "")
		job = jobJSON{}
		json.Unmarshal([]byte(body), &job)
		if job.State != app.JobRunning || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status != 200 || job.State != app.JobDone || job.FinishedAt == nil {
		t.Fatalf("final status: %d %s", status, body)
	}
	got, _ := e.vms.Get(context.Background(), v.ID)
	// The job registered the address as the agent's; the operator's manual value that
	// pointed the install at this host stays in effect over it.
	if got.GuestIPSource != app.SourceManual || got.RegisteredIP != host || got.RegisteredIPSource != app.SourceAgent || got.HostKey != srv.HostKey {
		t.Errorf("after install: %s (%s), registered %q (%s), host key %q", got.GuestIP, got.GuestIPSource, got.RegisteredIP, got.RegisteredIPSource, got.HostKey)
	}
	// The stored job holds no trace of the credentials.
	j, _ := e.db.LatestJob(context.Background(), v.ID)
	if b, _ := json.Marshal(j); strings.Contains(string(b), "PRIVATE") || strings.Contains(string(b), `"root"`) {
		t.Errorf("job record mentions credentials: %s", b)
	}
}

func TestUIAgentInstall(t *testing.T) {
	e, srv, v := installEnv(t)
	_, port, _ := net.SplitHostPort(srv.Addr)
	e.signIn()
	_, _, page := e.do("GET", "/vms/"+v.ID, "", nil)
	if !strings.Contains(page, `data-testid="install-agent"`) {
		t.Fatal("VM page has no Install agent button")
	}
	htmx := map[string]string{"HX-Request": "true"}
	status, _, panel := e.form("/vms/"+v.ID+"/agent/install", url.Values{"ssh_user": {"root"}, "ssh_port": {port},
		"ssh_key": {string(srv.ClientPEM)}}, htmx)
	if status != 200 || !strings.Contains(panel, `hx-trigger="every 1s"`) || strings.Contains(panel, "<html") {
		t.Fatalf("start from the form: %d\n%s", status, panel)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, hdr, panel := e.do("GET", "/vms/"+v.ID+"/agent/install", "", htmx)
		if status == 286 {
			if !strings.Contains(panel, `data-state="done"`) || strings.Contains(panel, "hx-trigger") || hdr.Get("HX-Trigger") != "vm-changed" {
				t.Errorf("finished panel: %s", panel)
			}
			break
		}
		if status != 200 || time.Now().After(deadline) {
			t.Fatalf("polling: %d\n%s", status, panel)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A VM that does not run: the panel says so instead of starting.
	w, _ := e.createVM("no-ip")
	status, _, panel = e.form("/vms/"+w.ID+"/agent/install", url.Values{}, htmx)
	if status != http.StatusConflict || !strings.Contains(panel, "start it before installing the agent") {
		t.Errorf("install into a defined VM: %d %s", status, panel)
	}
	// A running VM without a guest IP: likewise.
	e.db.SetRun(context.Background(), w.ID, store.Run{State: app.VMRunning, Driver: "qemu"}, nil)
	status, _, panel = e.form("/vms/"+w.ID+"/agent/install", url.Values{}, htmx)
	if status != 400 || !strings.Contains(panel, "no guest IP") {
		t.Errorf("install without IP: %d %s", status, panel)
	}
	if status, _, _ := e.form("/vms/"+w.ID+"/agent/install", url.Values{"ssh_port": {"x" + strconv.Itoa(1)}}, htmx); status != 400 {
		t.Errorf("bad port: %d", status)
	}
}

func TestInstallUnavailable(t *testing.T) {
	e := newEnv(t, nil)
	v, _ := e.createVM("a")
	if status, body := e.api("POST", "/v1/vms/"+v.ID+"/agent/install", "", ""); status != 503 || !strings.Contains(body, "not configured") {
		t.Errorf("without installs: %d %s", status, body)
	}
}
