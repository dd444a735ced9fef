package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"hearth/app"
	"hearth/app/agent"
	"hearth/app/vm"
)

// clockStepper is what runs after a VM is restored from a snapshot: its clock stood still
// in the snapshot, so the manager sends its time to the guest's agent (PUT /clock), which
// steps the clock. The agent may take a moment to answer (its network comes back with the
// guest); it is asked for up to 30 s. A VM without a registered guest IP, or an agent that
// does not answer, keeps its clock as it was, and the audit log says so.
func clockStepper(vms *vm.Service, client *agent.Client, logger *slog.Logger) func(context.Context, *app.VM) (string, error) {
	return func(ctx context.Context, v *app.VM) (string, error) {
		if v.GuestIP == "" {
			return "", fmt.Errorf("no guest IP is registered, so the guest's clock was not corrected")
		}
		ip, err := vms.CheckGuestIP(v.GuestIP)
		if err != nil {
			return "", fmt.Errorf("the guest IP is refused by the rules (%s), so the guest's clock was not corrected", err)
		}
		client.Forget(ip) // a connection kept from before the snapshot only times out
		deadline := time.Now().Add(30 * time.Second)
		for {
			actx, cancel := context.WithTimeout(ctx, 3*time.Second)
			res, err := client.SetClock(actx, ip, v.AgentToken)
			cancel()
			if err == nil {
				logger.Info("guest clock after a restore", "vm", v.ID, "offset_seconds", res.Seconds, "stepped", res.Stepped)
				if !res.Stepped {
					return fmt.Sprintf("guest clock checked after the restore: off by %.3f s, left alone", res.Seconds), nil
				}
				return fmt.Sprintf("guest clock stepped forward by %.1f s (it stood still in the snapshot)", res.Seconds), nil
			}
			var refused *agent.RefusedError
			if errors.As(err, &refused) || time.Now().After(deadline) || ctx.Err() != nil {
				return "", fmt.Errorf("the guest's agent did not take the manager's time (%s), so its clock was not corrected", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}
