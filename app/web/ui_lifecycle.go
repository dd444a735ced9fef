package web

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/views/pages"
)

func (s *Server) statusView(c echo.Context, rec *app.VM) pages.StatusView {
	v := pages.StatusView{VMID: rec.ID, Name: rec.Name, State: shownState(rec, s.nodeStates(c.Request().Context())), Reason: rec.StateReason,
		Driver: rec.RunningDriver, PID: rec.PID, CSRF: csrfToken(c), CanRun: s.VMs.CanRun(), Node: rec.Node}
	v.Interactive = rec.State.Live() && s.VMs.Interactive(rec.ID)
	if rec.State != app.VMDefined && !v.Interactive {
		v.Console = s.VMs.ConsoleTail(rec.ID, 30)
	}
	if pending, err := s.VMs.PendingActions(c.Request().Context(), rec.ID); err == nil {
		now := time.Now()
		for _, a := range pending {
			v.Pending = append(v.Pending, a.Action+" · asked of node "+a.Node+" by "+a.Actor+" "+ago(now, a.CreatedAt)+" · "+a.State)
		}
	}
	return v
}

// vmStatus is GET /vms/{id}/status: the polled lifecycle panel.
func (s *Server) vmStatus(c echo.Context) error {
	v, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return renderOK(c, pages.VMStatusPoll(s.statusView(c, v)))
}

// uiLifecycle serves the Start, Stop and Restart buttons: the panel comes back swapped in
// place (with the refusal in it, if any), and the activity list reloads.
func (s *Server) uiLifecycle(action string) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		_, _, opErr := s.VMs.Ask(ctx, c.Param("id"), action, actor(c))
		rec, err := s.VMs.Get(ctx, c.Param("id"))
		if err != nil {
			return err
		}
		status, refused := http.StatusOK, ""
		if opErr != nil {
			var escalate error
			if status, refused, escalate = refusal(opErr); escalate != nil {
				return escalate
			}
		}
		if !isHTMX(c) {
			if refused == "" {
				return c.Redirect(http.StatusSeeOther, "/vms/"+rec.ID)
			}
			// No panel to swap: the whole page, with the refusal in its status panel.
			return s.renderVMPageWith(c, rec, guestIPView(rec, time.Now()), status, refused)
		}
		v := s.statusView(c, rec)
		v.Error = refused
		if refused != "" {
			c.Response().Header().Set("HX-Reswap", "outerHTML")
		}
		c.Response().Header().Set("HX-Trigger", "vm-changed")
		return render(c, status, pages.VMStatusPoll(v))
	}
}
