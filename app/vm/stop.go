package vm

import (
	"context"
	"time"

	"hearth/app"
	"hearth/app/hypervisor"
	"hearth/app/store"
)

// Stop asks a running VM to shut down; it returns at once with the VM stopping, and the VM
// becomes stopped when its process has exited (killed after the stop timeout).
func (s *Service) Stop(ctx context.Context, id string, by app.Actor) (*app.VM, error) {
	return s.stop(ctx, id, by, false)
}

// Restart stops the VM and starts it again once it has stopped.
func (s *Service) Restart(ctx context.Context, id string, by app.Actor) (*app.VM, error) {
	return s.stop(ctx, id, by, true)
}

func (s *Service) stop(ctx context.Context, id string, by app.Actor, restart bool) (*app.VM, error) {
	if s.rt == nil {
		return nil, app.Errorf(app.EUNAVAILABLE, "this manager runs no hypervisor")
	}
	vm, err := s.db.VM(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.own(vm); err != nil {
		return nil, err
	}
	s.rt.mu.Lock()
	r := s.rt.running[id]
	if r == nil || r.stopping || r.op != "" {
		s.rt.mu.Unlock()
		switch {
		case r == nil:
			return nil, app.Errorf(app.ECONFLICT, "VM %s is %s, not running", vm.Name, vm.State)
		case r.op != "":
			return nil, app.Errorf(app.ECONFLICT, "VM %s is busy: %s; stop it once that is done", vm.Name, r.op)
		}
		return nil, app.Errorf(app.ECONFLICT, "VM %s is already stopping", vm.Name)
	}
	r.stopping, r.stopAt, r.restart, r.by = true, time.Now(), restart, by
	s.rt.mu.Unlock()
	if p, ok := r.m.(hypervisor.Pauser); ok && vm.State == app.VMPaused {
		// A frozen guest cannot answer the power button: thaw it first.
		if err := p.Resume(ctx); err != nil {
			s.rt.Logger.Warn("resume a paused VM to stop it", "vm", id, "error", err)
		}
	}
	verb := "stopping"
	if restart {
		verb = "restarting"
	}
	if err := s.db.SetRun(ctx, id, store.Run{State: app.VMStopping, Keep: true}, entry(by, app.AuditVMStop, id, verb+" "+vm.Name)); err != nil {
		return nil, err
	}
	go r.m.Stop(context.Background(), s.rt.StopTimeout) //nolint:errcheck // the supervisor records the outcome
	return s.db.VM(ctx, id)
}
