package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"hearth/app"
	"hearth/app/store"
	"hearth/provision/cloudinit"
	"hearth/provision/install"
)

// Jobs runs agent installs in the background, one at a time per VM, recording each step so
// the VM page can show progress and the failing step's error.
type Jobs struct {
	DB        *store.DB
	Installer *install.Installer
	Signer    ssh.Signer // the manager's key
	PublicURL string
	// CheckIP applies the guest-IP rules to the address about to be dialled.
	CheckIP func(ip string) error
	// SetGuestIP records the guest IP once the agent answers (source agent).
	SetGuestIP func(ctx context.Context, vmID, ip string) error
	// RotateToken gives the VM a fresh registration token for the agent's config.
	RotateToken func(ctx context.Context, vmID string) (string, error)
	AgentPort   int    // 8080 unless a test says otherwise
	Root        string // install prefix on the guest; tests only
	Logger      *slog.Logger
	Timeout     time.Duration // whole run (default 5 min)

	wg sync.WaitGroup
}

// Start begins an install on the VM and returns the job at once. creds are used for this
// run only: never stored, never logged.
func (j *Jobs) Start(ctx context.Context, vmID string, creds install.Credentials, by app.Actor) (*app.InstallJob, error) {
	vm, err := j.DB.VM(ctx, vmID)
	if err != nil {
		return nil, err
	}
	if vm.GuestIP == "" {
		return nil, app.Errorf(app.EINVALID, "VM %s has no guest IP; set it on the VM page (or let the guest register) before installing the agent", vm.Name)
	}
	if err := j.CheckIP(vm.GuestIP); err != nil {
		return nil, err
	}
	if vm.AgentToken == "" {
		tok, _ := app.NewToken(app.PrefixAgentToken)
		if err := j.DB.SetAgentToken(ctx, vm.ID, tok); err != nil {
			return nil, err
		}
		vm.AgentToken = tok
	}
	job := &app.InstallJob{ID: app.NewID(), VMID: vm.ID}
	for _, s := range install.Steps {
		job.Steps = append(job.Steps, app.JobStep{Name: s, State: app.StepPending})
	}
	e := &app.AuditEntry{Actor: by.String(), Action: app.AuditAgentInstall, VMID: vm.ID, Addr: by.Addr,
		Detail: "started an agent install on " + vm.GuestIP}
	if err := j.DB.StartJob(ctx, job, e); err != nil {
		return nil, err
	}
	// The run owns its own copy: the caller may read (encode) the returned job while the run
	// updates steps.
	mine := *job
	mine.Steps = append([]app.JobStep(nil), job.Steps...)
	j.wg.Add(1)
	go j.run(vm, &mine, creds, by)
	return job, nil
}

// Wait blocks until running jobs end (shutdown, tests).
func (j *Jobs) Wait() { j.wg.Wait() }

func (j *Jobs) port() int {
	if j.AgentPort != 0 {
		return j.AgentPort
	}
	return 8080
}

func (j *Jobs) run(vm *app.VM, job *app.InstallJob, creds install.Credentials, by app.Actor) {
	defer j.wg.Done()
	timeout := j.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	log := j.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	save := func(e *app.AuditEntry) {
		if err := j.DB.UpdateJob(ctx, job, e); err != nil && ctx.Err() == nil {
			log.Error("save install job", "job", job.ID, "error", err)
		}
	}
	// The final state is saved with a context of its own: the run's may have ended (that
	// is often why it finished), and a job must never stay running.
	saveFinal := func(e *app.AuditEntry) {
		fctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := j.DB.UpdateJob(fctx, job, e); err != nil {
			log.Error("save install job's end", "job", job.ID, "state", job.State, "error", err)
		}
	}
	current := -1
	progress := func(step string) {
		for i := range job.Steps {
			if job.Steps[i].Name == step {
				if current >= 0 {
					job.Steps[current].State = app.JobDone
				}
				job.Steps[i].State, current = app.JobRunning, i
			}
		}
		save(nil)
	}

	regToken, err := j.RotateToken(ctx, vm.ID)
	var res install.Result
	if err == nil {
		conf := cloudinit.Params{VMID: vm.ID, ManagerURL: j.PublicURL, AgentToken: vm.AgentToken, RegistrationToken: regToken,
			Listen: ":" + strconv.Itoa(j.port())}.AgentConf()
		req := install.Request{Host: vm.GuestIP, Creds: creds, Signer: j.Signer, HostKey: vm.HostKey, Conf: conf, Root: j.Root,
			Health:   func(ctx context.Context) (string, error) { return j.health(ctx, vm.GuestIP) },
			Register: func(ctx context.Context) error { return j.SetGuestIP(ctx, vm.ID, vm.GuestIP) }}
		res, err = j.Installer.Run(ctx, req, progress)
		if res.HostKeyNew && res.HostKey != "" {
			// Trust on first use: from now on this key is pinned.
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
			defer cancel()
			if herr := j.DB.SetHostKey(hctx, vm.ID, res.HostKey, "tofu", &app.AuditEntry{Actor: by.String(),
				Action: app.AuditAgentInstall, VMID: vm.ID, Addr: by.Addr, Detail: "recorded the guest's SSH host key on first use"}); herr != nil {
				log.Error("record host key", "vm", vm.ID, "error", herr)
			}
		}
	}
	e := &app.AuditEntry{Actor: by.String(), Action: app.AuditAgentInstall, VMID: vm.ID, Addr: by.Addr}
	if err != nil {
		job.State, job.Error = app.JobFailed, err.Error()
		var se *install.StepError
		if errors.As(err, &se) {
			for i := range job.Steps {
				if job.Steps[i].Name == se.Step {
					job.Steps[i].State, job.Steps[i].Detail = app.JobFailed, se.Err.Error()
				}
			}
		} else if current >= 0 {
			job.Steps[current].State = app.JobFailed
		}
		e.Detail = "agent install failed: " + err.Error()
		log.Warn("agent install failed", "vm", vm.ID, "job", job.ID, "error", err)
	} else {
		for i := range job.Steps {
			job.Steps[i].State = app.JobDone
		}
		job.Steps[len(job.Steps)-1].Detail = "agent " + res.AgentVersion + " answering on " + vm.GuestIP
		job.State = app.JobDone
		e.Detail = fmt.Sprintf("installed agent %s (%s, %s)", res.AgentVersion, res.Arch, res.Init)
	}
	saveFinal(e)
}

// health asks the agent on the VM's registered IP, and nowhere else: no redirects, a
// short timeout, a capped body.
func (j *Jobs) health(ctx context.Context, ip string) (string, error) {
	addr := net.JoinHostPort(ip, strconv.Itoa(j.port()))
	c := &http.Client{Timeout: 3 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("the agent answered with a redirect") },
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr) // only ever the guest's own address
		}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/health", nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var h struct{ Status, Version string }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&h); err != nil || resp.StatusCode != 200 || h.Status != "ok" {
		return "", fmt.Errorf("/health answered %s", resp.Status)
	}
	return h.Version, nil
}

// Latest returns the VM's newest install job.
func (j *Jobs) Latest(ctx context.Context, vmID string) (*app.InstallJob, error) {
	return j.DB.LatestJob(ctx, vmID)
}
