package vm

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"hearth/app"
	"hearth/app/hypervisor"
	"hearth/app/store"
)

// Reattach runs at manager start: VMs recorded as running are taken over if their
// hypervisor process is still there, and marked stopped, with the reason, if not. A pid
// is only ever signalled once it is proven to be the process recorded at the VM's start
// (same boot id and start time): after a crash or a reboot the number may belong to
// anything, and a manager running as root must never kill a stranger.
func (s *Service) Reattach(ctx context.Context) error {
	if s.rt == nil {
		return nil
	}
	vms, err := s.db.VMs(ctx)
	if err != nil {
		return err
	}
	system := app.Actor{Kind: app.ActorSystem, Name: "manager"}
	for _, vm := range vms {
		if !vm.Busy() || s.own(vm) != nil { // another node's VM is that node's to take over
			continue
		}
		m, reason := s.takeOver(ctx, vm)
		if m != nil {
			state := app.VMRunning
			if vm.State == app.VMPaused { // the hypervisor keeps its guest paused for the next manager
				state = app.VMPaused
			}
			if err := s.db.SetRun(ctx, vm.ID, store.Run{State: state, PID: vm.PID, Identity: m.Identity(), Driver: vm.RunningDriver},
				entry(system, app.AuditVMState, vm.ID, "re-attached after a manager restart")); err != nil {
				return err
			}
			s.supervise(vm.ID, vm.RunningDriver, m, system)
			continue
		}
		s.rt.Logger.Warn("VM not re-attached", "vm", vm.ID, "pid", vm.PID, "reason", reason)
		s.dropSeed(vm.ID)
		if err := s.db.SetRun(ctx, vm.ID, store.Run{State: app.VMStopped, Reason: reason},
			entry(system, app.AuditVMState, vm.ID, reason)); err != nil {
			return err
		}
	}
	return nil
}

// takeOver attaches to the VM's recorded hypervisor process, or says why it could not and
// what became of the process.
func (s *Service) takeOver(ctx context.Context, vm *app.VM) (hypervisor.Machine, string) {
	const prefix = "the manager restarted and "
	identity := vm.PIDIdentity
	if identity == "" {
		// Recorded by a manager older than identities: the command line check in Attach is
		// all there is, so whatever fails here is left alone.
		identity, _ = hypervisor.IdentityOf(vm.PID)
	}
	err := hypervisor.Verify(vm.PID, identity)
	var mismatch *hypervisor.MismatchError
	switch {
	case errors.Is(err, hypervisor.ErrGone):
		return nil, fmt.Sprintf(prefix+"the hypervisor process (pid %d) was gone", vm.PID)
	case errors.As(err, &mismatch):
		return nil, fmt.Sprintf(prefix+"the hypervisor process was gone: %s, which was left alone", mismatch)
	case err != nil:
		return nil, prefix + "could not check the hypervisor process: " + err.Error() + "; it was left alone"
	}
	a, ok := s.rt.Drivers[vm.RunningDriver].(Attacher)
	if !ok {
		return nil, s.killOurs(vm, identity, prefix+"cannot take over a "+vm.RunningDriver+" process")
	}
	files := s.files(vm.ID)
	spec := hypervisor.Spec{VMID: vm.ID, Name: vm.Name, Dir: files.Run(), Console: files.Console()}
	m, err := a.Attach(ctx, spec, vm.PID, identity)
	if err == nil {
		return m, ""
	}
	return nil, s.killOurs(vm, identity, prefix+"could not take over the hypervisor process: "+err.Error())
}

// killOurs kills a hypervisor process that cannot be taken over, so it is not orphaned,
// but only if its identity was recorded at start and still matches: a process found by
// its command line alone is left running, and the reason says so.
func (s *Service) killOurs(vm *app.VM, identity, reason string) string {
	if vm.PIDIdentity == "" {
		return fmt.Sprintf("%s; pid %d was left alone (no identity was recorded for it)", reason, vm.PID)
	}
	if err := hypervisor.SignalVerified(vm.PID, identity, syscall.SIGKILL); err != nil {
		return fmt.Sprintf("%s; pid %d was not killed: %s", reason, vm.PID, err)
	}
	return reason + "; it was killed"
}

// Detach lets go of every running VM without stopping it, as at manager shutdown: the VMs
// keep running and the next manager re-attaches to them.
func (s *Service) Detach() {
	if s.rt == nil {
		return
	}
	s.rt.mu.Lock()
	defer s.rt.mu.Unlock()
	for id, r := range s.rt.running {
		r.detached = true
		if rel, ok := r.m.(hypervisor.Releaser); ok {
			rel.Release()
		}
		delete(s.rt.running, id)
	}
}

// WaitIdle waits for supervisors to finish (tests, shutdown).
func (s *Service) WaitIdle() {
	if s.rt != nil {
		s.rt.wg.Wait()
	}
}
