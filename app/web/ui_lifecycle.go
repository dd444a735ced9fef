package web

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/views/pages"
)

func (s *Server) statusView(c echo.Context, rec *app.VM) pages.StatusView {
	v := pages.StatusView{VMID: rec.ID, State: string(rec.State), Reason: rec.StateReason, Driver: rec.RunningDriver,
		PID: rec.PID, CSRF: csrfToken(c), CanRun: s.VMs.CanRun()}
	if rec.State != app.VMDefined {
		v.Console = s.VMs.ConsoleTail(rec.ID, 30)
	}
	return v
}

// vmStatus is GET /vms/{id}/status: the polled lifecycle panel.
func (s *Server) vmStatus(c echo.Context) error {
	v, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return renderOK(c, pages.VMStatus(s.statusView(c, v)))
}

// uiLifecycle serves the Start, Stop and Restart buttons: the panel comes back swapped in
// place (with the refusal in it, if any), and the activity list reloads.
func (s *Server) uiLifecycle(op func(context.Context, string, app.Actor) (*app.VM, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		_, opErr := op(ctx, c.Param("id"), actor(c))
		rec, err := s.VMs.Get(ctx, c.Param("id"))
		if err != nil {
			return err
		}
		if !isHTMX(c) {
			if opErr != nil && app.ErrorCode(opErr) == app.EINTERNAL {
				return opErr
			}
			return c.Redirect(http.StatusSeeOther, "/vms/"+rec.ID)
		}
		v := s.statusView(c, rec)
		status := http.StatusOK
		if opErr != nil {
			var code string
			status, code, v.Error = classify(opErr)
			if code == app.EINTERNAL {
				return opErr
			}
			c.Response().Header().Set("HX-Reswap", "outerHTML")
		}
		c.Response().Header().Set("HX-Trigger", "vm-changed")
		return render(c, status, pages.VMStatus(v))
	}
}
