package vm

import (
	"context"
	"fmt"
	"time"

	"hearth/app"
	"hearth/app/hypervisor"
	"hearth/app/store"
)

// supervise waits for the hypervisor process and records how it ended: stopped when asked
// to, failed (with the exit and the console's last lines) when not.
func (s *Service) supervise(id, driver string, m hypervisor.Machine, by app.Actor) {
	rt := s.rt
	rt.mu.Lock()
	rt.running[id] = &run{m: m, driver: driver, by: by}
	rt.mu.Unlock()
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		<-m.Done()
		rt.mu.Lock()
		r := rt.running[id]
		if r != nil && r.m == m {
			delete(rt.running, id)
		}
		rt.mu.Unlock()
		if r != nil && r.detached {
			return
		}
		s.delTap(id) // the process that held it is gone
		s.dropSeed(id)
		ctx := context.Background()
		e := m.Exit()
		system := app.Actor{Kind: app.ActorSystem, Name: "supervisor"}
		if r != nil && r.stopping {
			// The machine waits StopTimeout for the guest to power off, then kills it: an
			// exit that late was forced, and the operator should know the guest ignored the
			// request (no ACPI handler, hung shutdown).
			detail, reason := "stopped", ""
			if r.restore {
				detail = "stopped to be restored from a snapshot"
			} else if time.Since(r.stopAt) >= rt.StopTimeout {
				reason = fmt.Sprintf("the guest did not power off within %s of the shutdown request and was killed", rt.StopTimeout)
				detail = "stopped by force: " + reason
				rt.Logger.Warn("guest ignored the shutdown request; killed", "vm", id, "timeout", rt.StopTimeout)
			}
			if err := s.db.SetRun(ctx, id, store.Run{State: app.VMStopped, Driver: driver, Reason: reason}, entry(r.by, app.AuditVMStop, id, detail)); err != nil {
				rt.Logger.Error("record stop", "vm", id, "error", err)
			}
			if r.restart && !r.restore {
				if _, err := s.Start(ctx, id, r.by); err != nil {
					rt.Logger.Warn("restart: start again", "vm", id, "error", err)
				}
			}
			return
		}
		reason := exitText(e)
		if tail := Tail(m.ConsolePath(), 10); tail != "" {
			reason += "; last console lines:\n" + tail
		}
		rt.Logger.Warn("hypervisor process died", "vm", id, "exit", exitText(e))
		if err := s.db.SetRun(ctx, id, store.Run{State: app.VMFailed, Driver: driver, Reason: reason},
			entry(system, app.AuditVMState, id, "failed: the hypervisor exited unasked ("+exitText(e)+")")); err != nil {
			rt.Logger.Error("record failure", "vm", id, "error", err)
		}
	}()
}

func exitText(e hypervisor.Exit) string {
	if e.Signal != "" {
		return "killed by signal " + e.Signal
	}
	return fmt.Sprintf("exit status %d", e.Code)
}
