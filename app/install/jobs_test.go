package install

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"hearth/app"
	"hearth/app/agent"
	"hearth/app/store"
	"hearth/app/vm"
	"hearth/internal/testkit/installtest"
	"hearth/internal/testkit/storetest"
	"hearth/provision"
	"hearth/provision/sshinstall"
)

// TestInstallJob runs a whole install job against a real sshd on loopback: the steps are
// recorded as they go, the guest's host key is recorded on first use, the agent answers
// and the guest IP is registered with source agent.
func TestInstallJob(t *testing.T) {
	db := storetest.SQLite(t)
	s := loopbackVMs(t, db)
	ctx := context.Background()
	off := false
	v, _, err := s.Create(ctx, app.VMSpec{Name: "running-vm", Provision: &off}, operator)
	if err != nil {
		t.Fatal(err)
	}
	markRunning(t, db, v.ID)
	srv := installtest.Start(t)
	host, portS, _ := net.SplitHostPort(srv.Addr)
	// The test's "guest" is this host: its loopback address stands in for the guest IP,
	// which loopbackVMs' rules admit.
	if _, err := db.SetGuestIP(ctx, v.ID, host, app.SourceManual, nil); err != nil {
		t.Fatal(err)
	}
	agentPort := freeTCPPort(t)
	root := t.TempDir()
	t.Cleanup(func() { exec.Command("pkill", "-f", "^"+root+"/usr/local/bin/hearth-agent").Run() })
	jobs := &Jobs{DB: db, VMs: s, Installer: &sshinstall.Installer{Agent: func(string) ([]byte, error) { return installtest.Agent(t), nil }, HealthTimeout: 20 * time.Second},
		Agent: agent.New(agent.Options{Port: agentPort}), Signer: srv.Client, PublicURL: "http://10.0.0.1:8080", Root: root}
	port, _ := strconv.Atoi(portS)
	job, err := jobs.Start(ctx, v.ID, app.Credentials{User: "root", Port: port}, operator)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != app.JobRunning || len(job.Steps) != len(sshinstall.Steps) {
		t.Errorf("started job %+v", job)
	}
	if _, err := jobs.Start(ctx, v.ID, app.Credentials{User: "root", Port: port}, operator); app.ErrorCode(err) != app.ECONFLICT {
		t.Errorf("second concurrent install: %v", err)
	}
	jobs.Wait()
	got, err := jobs.Latest(ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != app.JobDone || got.Error != "" {
		t.Fatalf("job ended %s: %s (steps %+v)", got.State, got.Error, got.Steps)
	}
	for _, st := range got.Steps {
		if st.State != app.JobDone {
			t.Errorf("step %s is %s", st.Name, st.State)
		}
	}
	after, _ := db.VM(ctx, v.ID)
	if after.HostKey != srv.HostKey || after.HostKeySource != "tofu" || after.RegisteredIPSource != app.SourceAgent || after.AgentToken == "" {
		t.Errorf("VM after install: key %q (%s), registered by %s, token %q", after.HostKey, after.HostKeySource, after.RegisteredIPSource, after.AgentToken)
	}
	log, _ := db.AuditLog(ctx, v.ID, 10)
	var details []string
	for _, e := range log {
		details = append(details, e.Detail)
	}
	joined := strings.Join(details, "\n")
	if !strings.Contains(joined, "installed agent") || !strings.Contains(joined, "recorded the guest's SSH host key on first use") {
		t.Errorf("audit log:\n%s", joined)
	}

	// From now on the recorded key is pinned: pin another one by hand, as if the guest had
	// been replaced by an impostor, and the next run refuses to connect.
	_, other, _ := provision.NewKeyPair("impostor")
	if err := db.SetHostKey(ctx, v.ID, other, "tofu", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.Start(ctx, v.ID, app.Credentials{User: "root", Port: port}, operator); err != nil {
		t.Fatal(err)
	}
	jobs.Wait()
	failed, _ := jobs.Latest(ctx, v.ID)
	if failed.State != app.JobFailed || !strings.Contains(failed.Error, "host key mismatch") || failed.Steps[0].State != app.JobFailed {
		t.Errorf("pinned mismatch: %s %q %+v", failed.State, failed.Error, failed.Steps[0])
	}
}

func TestInstallJobNeedsGuestIP(t *testing.T) {
	db := storetest.SQLite(t)
	s := loopbackVMs(t, db)
	off := false
	ctx := context.Background()
	v, _, _ := s.Create(ctx, app.VMSpec{Name: "no-ip", Provision: &off}, operator)
	jobs := &Jobs{DB: db, VMs: s}
	// A VM that is not running has no guest to install into.
	if _, err := jobs.Start(ctx, v.ID, app.Credentials{}, operator); app.ErrorCode(err) != app.ECONFLICT || !strings.Contains(err.Error(), "start it before installing the agent") {
		t.Errorf("install into a defined VM: %v", err)
	}
	markRunning(t, db, v.ID)
	if _, err := jobs.Start(ctx, v.ID, app.Credentials{}, operator); app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), "no guest IP") {
		t.Errorf("install without a guest IP: %v", err)
	}
	// An address the guest-IP rules refuse (here: outside 127.0.0.0/8) is never dialled.
	if _, err := db.SetGuestIP(ctx, v.ID, "10.9.8.7", app.SourceManual, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.Start(ctx, v.ID, app.Credentials{}, operator); app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), "10.9.8.7") {
		t.Errorf("install to an address the rules refuse: %v", err)
	}
}

// markRunning records the VM as running, as if a hypervisor ran it: the installer's target
// is the test's sshd, not a guest.
func markRunning(t *testing.T, db *store.DB, id string) {
	t.Helper()
	if err := db.SetRun(context.Background(), id, store.Run{State: app.VMRunning, Driver: "qemu"}, nil); err != nil {
		t.Fatal(err)
	}
}

// loopbackVMs is the VM use case with rules that admit loopback "guests": the test's guest
// is this host, behind a real sshd on 127.0.0.1.
func loopbackVMs(t *testing.T, db *store.DB) *vm.Service {
	rules := vm.Rules{CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, AllowLoopback: true,
		HostAddrs: func() []netip.Addr { return nil }}
	return vm.NewService(db, rules, t.TempDir())
}

func freeTCPPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestInstallJobHostileGuests: a guest that floods or hangs ends its job, failed, within the
// job's timeout; what is stored of it is small; and the next install is not refused as
// "already running".
func TestInstallJobHostileGuests(t *testing.T) {
	for _, c := range []struct {
		name string
		b    installtest.Behaviour
		want string
	}{
		{"flood", installtest.FloodStderr, "flood of guest output"},
		{"hang", installtest.Hang, "did not finish in time"},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := storetest.SQLite(t)
			s := loopbackVMs(t, db)
			ctx := context.Background()
			off := false
			v, _, err := s.Create(ctx, app.VMSpec{Name: "hostile", Provision: &off}, operator)
			if err != nil {
				t.Fatal(err)
			}
			markRunning(t, db, v.ID)
			h := installtest.StartHostile(t, c.b, 64<<20)
			host, portS, _ := net.SplitHostPort(h.Addr)
			port, _ := strconv.Atoi(portS)
			if _, err := db.SetGuestIP(ctx, v.ID, host, app.SourceManual, nil); err != nil {
				t.Fatal(err)
			}
			jobs := &Jobs{DB: db, VMs: s, Installer: &sshinstall.Installer{Agent: func(string) ([]byte, error) { return []byte("agent"), nil }},
				Agent: agent.New(agent.Options{}), Timeout: 2 * time.Second}
			creds := app.Credentials{User: "root", Port: port, Password: "x"}
			start := time.Now()
			if _, err := jobs.Start(ctx, v.ID, creds, operator); err != nil {
				t.Fatal(err)
			}
			jobs.Wait()
			took := time.Since(start)
			got, err := jobs.Latest(ctx, v.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != app.JobFailed || !strings.Contains(got.Error, c.want) || got.FinishedAt.IsZero() {
				t.Errorf("job ended %s: %q", got.State, got.Error)
			}
			if took > 6*time.Second {
				t.Errorf("the job took %s with a 2 s timeout", took)
			}
			stored := len(got.Error)
			for _, st := range got.Steps {
				stored += len(st.Detail)
			}
			log, _ := db.AuditLog(ctx, v.ID, 3)
			for _, e := range log {
				stored += len(e.Detail)
			}
			t.Logf("%s: job failed after %s; %d bytes of error, step details and audit stored", c.name, took.Round(time.Millisecond), stored)
			if stored > 4<<10 {
				t.Errorf("%d bytes stored about one failed install", stored)
			}
			if _, err := jobs.Start(ctx, v.ID, creds, operator); err != nil {
				t.Errorf("the next install: %v", err)
			}
			jobs.Wait()
		})
	}
}
