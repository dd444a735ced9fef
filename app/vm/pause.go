package vm

import (
	"context"

	"hearth/app"
	"hearth/app/hypervisor"
	"hearth/app/store"
)

// Pause freezes a running VM's guest: its process stays, its vCPUs stop (QEMU stop,
// Firecracker PATCH /vm Paused). The collector does not poll a paused VM's agent.
func (s *Service) Pause(ctx context.Context, id string, by app.Actor) (*app.VM, error) {
	return s.freeze(ctx, id, by, true)
}

// Resume lets a paused VM's guest run again.
func (s *Service) Resume(ctx context.Context, id string, by app.Actor) (*app.VM, error) {
	return s.freeze(ctx, id, by, false)
}

func (s *Service) freeze(ctx context.Context, id string, by app.Actor, pause bool) (*app.VM, error) {
	from, to, verb, action := app.VMRunning, app.VMPaused, "paused", app.AuditVMPause
	if !pause {
		from, to, verb, action = app.VMPaused, app.VMRunning, "resumed", app.AuditVMResume
	}
	vm, r, p, err := s.pauser(ctx, id)
	if err != nil {
		return nil, err
	}
	if vm.State != from {
		return nil, app.Errorf(app.ECONFLICT, "VM %s is %s, not %s", vm.Name, vm.State, from)
	}
	done, err := s.rt.begin(id, r, verb)
	if err != nil {
		return nil, err
	}
	defer done()
	act := p.Pause
	undo := p.Resume
	if !pause {
		act, undo = p.Resume, p.Pause
	}
	if err := act(ctx); err != nil {
		return nil, app.Errorf(app.EINVALID, "%s could not be %s: %s", vm.Name, verb, err)
	}
	if err := s.db.SetRun(ctx, id, store.Run{State: to, Keep: true, From: []app.VMState{from}}, entry(by, action, id, verb+" "+vm.Name)); err != nil {
		undo(context.Background()) //nolint:errcheck // the record says otherwise: undo
		return nil, err
	}
	return s.db.VM(ctx, id)
}

// pauser finds the VM, its run, and its machine's pause control.
func (s *Service) pauser(ctx context.Context, id string) (*app.VM, *run, hypervisor.Pauser, error) {
	if s.rt == nil {
		return nil, nil, nil, app.Errorf(app.EUNAVAILABLE, "this manager runs no hypervisor")
	}
	vm, err := s.db.VM(ctx, id)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := s.own(vm); err != nil {
		return nil, nil, nil, err
	}
	s.rt.mu.Lock()
	r := s.rt.running[id]
	s.rt.mu.Unlock()
	if r == nil || !vm.State.Live() {
		return nil, nil, nil, app.Errorf(app.ECONFLICT, "VM %s is %s, not running", vm.Name, vm.State)
	}
	p, ok := r.m.(hypervisor.Pauser)
	if !ok {
		return nil, nil, nil, app.Errorf(app.EUNAVAILABLE, "the %s driver cannot pause a VM", r.driver)
	}
	return vm, r, p, nil
}

// begin marks r as busy with op (a pause, a snapshot, a restore) until done is called;
// another op meanwhile, or a stop, is refused.
func (rt *runner) begin(id string, r *run, op string) (done func(), err error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.running[id] != r || r.stopping {
		return nil, app.Errorf(app.ECONFLICT, "the VM is stopping")
	}
	if r.op != "" {
		return nil, app.Errorf(app.ECONFLICT, "the VM is busy: %s", r.op)
	}
	r.op = op
	return func() {
		rt.mu.Lock()
		r.op = ""
		rt.mu.Unlock()
	}, nil
}
