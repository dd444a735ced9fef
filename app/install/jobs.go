// Package install is the agent-install use case: a background job per VM that puts the
// guest agent in over SSH/SFTP (the steps are provision/sshinstall's), recording each step
// for the VM page, pinning the guest's host key on first use, rotating the VM's
// registration token into the agent's config, and registering the guest IP once the agent
// answers.
package install

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"hearth/app"
	"hearth/app/agent"
	"hearth/app/store"
	"hearth/provision/cloudinit"
	"hearth/provision/sshinstall"
)

// VMs is what installs need of the VM use cases; *vm.Service has it.
type VMs interface {
	// CheckGuestIP applies the guest-IP rules to the address about to be dialled.
	CheckGuestIP(raw string) (netip.Addr, error)
	// SetGuestIP records the guest IP once the agent answers (source agent).
	SetGuestIP(ctx context.Context, id, raw string, source app.GuestIPSource, by app.Actor) (*app.VM, error)
	// RotateRegistrationToken gives the VM a fresh registration token for the agent's config.
	RotateRegistrationToken(ctx context.Context, id string, by app.Actor) (string, error)
	// Owns refuses a VM that is another node's: its guest is on that node's network.
	Owns(vm *app.VM) error
}

// Jobs runs agent installs in the background, one at a time per VM, recording each step so
// the VM page can show progress and the failing step's error.
type Jobs struct {
	DB        *store.DB
	VMs       VMs
	Installer *sshinstall.Installer
	Agent     *agent.Client // asks the started agent for /health
	Signer    ssh.Signer    // the manager's key
	PublicURL string
	Root      string // install prefix on the guest; tests only
	Logger    *slog.Logger
	Timeout   time.Duration // whole run (default 5 min)

	wg sync.WaitGroup
}

// system is who the jobs' own changes are recorded as.
var system = app.Actor{Kind: app.ActorSystem, Name: "installer"}

// Start begins an install on the VM and returns the job at once. creds are used for this
// run only: never stored, never logged.
func (j *Jobs) Start(ctx context.Context, vmID string, creds app.Credentials, by app.Actor) (*app.InstallJob, error) {
	vm, err := j.DB.VM(ctx, vmID)
	if err != nil {
		return nil, err
	}
	if err := j.VMs.Owns(vm); err != nil { // its guest is on its node's network
		return nil, err
	}
	if vm.State != app.VMRunning {
		return nil, app.Errorf(app.ECONFLICT, "VM %s is %s; start it before installing the agent", vm.Name, vm.State)
	}
	if vm.GuestIP == "" {
		return nil, app.Errorf(app.EINVALID, "VM %s has no guest IP; set it on the VM page (or let the guest register) before installing the agent", vm.Name)
	}
	if _, err := j.VMs.CheckGuestIP(vm.GuestIP); err != nil {
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
	for _, s := range sshinstall.Steps {
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

func (j *Jobs) run(vm *app.VM, job *app.InstallJob, creds app.Credentials, by app.Actor) {
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

	regToken, err := j.VMs.RotateRegistrationToken(ctx, vm.ID, system)
	var res sshinstall.Result
	var ip netip.Addr
	if err == nil {
		ip, err = j.VMs.CheckGuestIP(vm.GuestIP) // dial only what passes the rules, now
	}
	if err == nil {
		conf := cloudinit.Params{VMID: vm.ID, ManagerURL: j.PublicURL, AgentToken: vm.AgentToken, RegistrationToken: regToken,
			Listen: ":" + strconv.Itoa(j.Agent.Port())}.AgentConf()
		req := sshinstall.Request{Host: ip.String(), Creds: creds, Signer: j.Signer, HostKey: vm.HostKey, Conf: conf, Root: j.Root,
			Health: func(ctx context.Context) (string, error) { return j.Agent.Health(ctx, ip) },
			Register: func(ctx context.Context) error {
				_, err := j.VMs.SetGuestIP(ctx, vm.ID, ip.String(), app.SourceAgent, system)
				return err
			}}
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
		var se *sshinstall.StepError
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

// Latest returns the VM's newest install job.
func (j *Jobs) Latest(ctx context.Context, vmID string) (*app.InstallJob, error) {
	return j.DB.LatestJob(ctx, vmID)
}
