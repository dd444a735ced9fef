package web

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/views/pages"
)

// installView turns a job into its panel.
func installView(vmID string, j *app.InstallJob, csrf string) pages.InstallView {
	v := pages.InstallView{VMID: vmID, CSRF: csrf}
	if j == nil {
		return v
	}
	v.State, v.Error = j.State, j.Error
	for _, st := range j.Steps {
		v.Steps = append(v.Steps, pages.InstallStep{Name: st.Name, State: st.State, Detail: st.Detail})
	}
	return v
}

// installStatus is GET /vms/{id}/agent/install: the progress panel, polled while the job
// runs. When it has finished, status 286 tells htmx to stop polling.
func (s *Server) installStatus(c echo.Context) error {
	in, err := s.installs()
	if err != nil {
		return err
	}
	j, err := in.Latest(c.Request().Context(), c.Param("id"))
	if err != nil && app.ErrorCode(err) != app.ENOTFOUND {
		return err
	}
	v := installView(c.Param("id"), j, csrfToken(c))
	v.Queued = s.queuedInstall(c, c.Param("id"))
	status := http.StatusOK
	if (j == nil || j.State != app.JobRunning) && v.Queued == "" {
		status = 286
		c.Response().Header().Set("HX-Trigger", "vm-changed") // the activity list shows the outcome
	}
	return render(c, status, pages.VMAgentInstall(v))
}

// startInstall is POST /vms/{id}/agent/install from the panel's button or credentials
// form. Typed credentials go to the job and nowhere else.
func (s *Server) startInstall(c echo.Context) error {
	in, err := s.installs()
	if err != nil {
		return err
	}
	body := installBody{User: strings.TrimSpace(c.FormValue("ssh_user")), PrivateKey: c.FormValue("ssh_key"), Password: c.FormValue("ssh_password")}
	if p := strings.TrimSpace(c.FormValue("ssh_port")); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return app.Invalid(map[string]string{"port": "must be a number"})
		}
		body.Port = n
	}
	creds, err := body.creds()
	if err != nil {
		return err
	}
	var j *app.InstallJob
	if v := s.elsewhere(c); v != nil {
		// Another node's VM: a one-click install is queued for its node; one with typed
		// credentials goes there now (they are never stored, so never queued).
		if body == (installBody{}) {
			_, _, err = s.VMs.Ask(c.Request().Context(), v.ID, app.ActionInstall, actor(c))
		} else if err = s.askOwner(c, v, http.MethodPost, "/vms/"+v.ID+"/agent/install", body); err == nil {
			j, err = in.Latest(c.Request().Context(), v.ID)
		}
	} else {
		j, err = in.Start(c.Request().Context(), c.Param("id"), creds, actor(c))
	}
	if err != nil {
		status, msg, escalate := refusal(err)
		if escalate != nil {
			return escalate
		}
		v := installView(c.Param("id"), nil, csrfToken(c))
		v.StartError = msg
		c.Response().Header().Set("HX-Reswap", "outerHTML")
		return render(c, status, pages.VMAgentInstall(v))
	}
	if !isHTMX(c) {
		return c.Redirect(http.StatusSeeOther, "/vms/"+c.Param("id"))
	}
	v := installView(c.Param("id"), j, csrfToken(c))
	v.Queued = s.queuedInstall(c, c.Param("id"))
	return renderOK(c, pages.VMAgentInstall(v))
}

// queuedInstall says so when a one-click install of the VM waits for its node.
func (s *Server) queuedInstall(c echo.Context, id string) string {
	pending, err := s.VMs.PendingActions(c.Request().Context(), id)
	if err != nil {
		return ""
	}
	for _, a := range pending {
		if a.Action == app.ActionInstall {
			return "Install asked of node " + a.Node + " " + ago(time.Now(), a.CreatedAt) + " (" + a.State + "): its progress shows here once the node runs it."
		}
	}
	return ""
}
