package vm

import (
	"context"
	"log/slog"
	"time"

	"hearth/app"
	"hearth/app/store"
)

// Ask carries out a lifecycle action (app.ActionStart, …) on the VM: here, when the VM is
// this node's, as Start, Stop and the others do; queued for its node otherwise, which
// carries it out (RunActions) — at once when it is up, when it is back otherwise. A
// queued action comes back with the VM as it is now.
func (s *Service) Ask(ctx context.Context, id, action string, by app.Actor) (*app.VM, *app.VMAction, error) {
	op, ok := s.actionOp(action)
	if !ok {
		return nil, nil, app.Errorf(app.EINVALID, "unknown action %q", action)
	}
	vm, err := s.db.VM(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if s.own(vm) == nil {
		v, err := op(ctx, id, by)
		return v, nil, err
	}
	a := &app.VMAction{ID: app.NewID(), VMID: id, Node: vm.Node, Action: action, Actor: by.String(), Addr: by.Addr}
	if err := s.db.QueueAction(ctx, a, entry(by, app.AuditVMAction, id, action+" "+vm.Name+": asked of node "+vm.Node)); err != nil {
		return nil, nil, err
	}
	return vm, a, nil
}

func (s *Service) actionOp(action string) (func(context.Context, string, app.Actor) (*app.VM, error), bool) {
	op, ok := map[string]func(context.Context, string, app.Actor) (*app.VM, error){
		app.ActionStart: s.Start, app.ActionStop: s.Stop, app.ActionRestart: s.Restart,
		app.ActionPause: s.Pause, app.ActionResume: s.Resume,
		app.ActionInstall: func(ctx context.Context, id string, by app.Actor) (*app.VM, error) {
			if s.installer == nil {
				return nil, app.Errorf(app.EUNAVAILABLE, "agent installs are not configured on node %s", s.node)
			}
			if err := s.installer(ctx, id, by); err != nil {
				return nil, err
			}
			return s.db.VM(ctx, id)
		},
		app.ActionDelete: func(ctx context.Context, id string, by app.Actor) (*app.VM, error) {
			v, err := s.db.VM(ctx, id)
			if err != nil {
				return nil, err
			}
			return v, s.Delete(ctx, id, by)
		},
	}[action]
	return op, ok
}

// WithInstaller gives the node's one-click agent install (install.Jobs.Start with Hearth's
// own key), which queued install actions run.
func (s *Service) WithInstaller(install func(ctx context.Context, id string, by app.Actor) error) *Service {
	s.installer = install
	return s
}

// PendingActions are the VM's queued actions not yet carried out by its node.
func (s *Service) PendingActions(ctx context.Context, id string) ([]*app.VMAction, error) {
	return s.db.PendingActions(ctx, id)
}

// Action returns one queued action (GET /v1/actions/{id}).
func (s *Service) Action(ctx context.Context, id string) (*app.VMAction, error) {
	return s.db.Action(ctx, id)
}

// RunActions carries out what other nodes queued for this node's VMs until ctx ends: at
// once when PostgreSQL announces one (LISTEN), and every sweep regardless (a
// notification lost with a connection, or queued while this node was down). Actions left
// running by a crash are marked failed first: whether they happened is not known.
func (s *Service) RunActions(ctx context.Context, sweep time.Duration, logger *slog.Logger) {
	if s.node == "" {
		return
	}
	if n, err := s.db.FailRunningActions(ctx, s.node); err != nil {
		logger.Warn("actions: mark interrupted ones failed", "error", err)
	} else if n > 0 {
		logger.Warn("actions interrupted by the last stop of this node were marked failed", "count", n)
	}
	wake := make(chan struct{}, 1)
	poke := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	go s.db.Listen(ctx, store.ActionsChannel, func(node string) {
		if node == "" || node == s.node {
			poke()
		}
	}, func(err error) {
		logger.Warn("actions: listening for queued actions failed; the sweep still runs", "error", err)
	})
	t := time.NewTicker(sweep)
	defer t.Stop()
	for {
		s.drainActions(ctx, logger)
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

func (s *Service) drainActions(ctx context.Context, logger *slog.Logger) {
	for ctx.Err() == nil {
		a, err := s.db.NextAction(ctx, s.node)
		if err != nil {
			logger.Warn("actions: read the queue", "error", err)
			return
		}
		if a == nil {
			return
		}
		op, _ := s.actionOp(a.Action)
		state, why := app.ActionDone, ""
		if op == nil {
			state, why = app.ActionFailed, "unknown action "+a.Action
		} else if _, err := op(ctx, a.VMID, app.ParseActor(a.Actor, a.Addr)); err != nil {
			state, why = app.ActionFailed, app.ErrorMessage(err)
		}
		logger.Info("carried out an action asked by another node", "vm", a.VMID, "action", a.Action, "by", a.Actor,
			"state", state, "error", why, "waited", time.Since(a.CreatedAt).Round(time.Millisecond))
		if err := s.db.FinishAction(context.Background(), a.ID, state, why); err != nil {
			logger.Warn("actions: record the outcome", "id", a.ID, "error", err)
		}
	}
}
