package web

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
)

// installBody is the optional body of POST /v1/vms/{id}/agent/install, for VMs Hearth did
// not provision: how to log in. Nothing of it is stored or logged.
type installBody struct {
	User       string `json:"user"`
	Port       int    `json:"port"`
	PrivateKey string `json:"private_key"`
	Password   string `json:"password"`
}

func (b installBody) creds() (app.Credentials, error) {
	if b.Port < 0 || b.Port > 65535 {
		return app.Credentials{}, app.Invalid(map[string]string{"port": "must be between 1 and 65535"})
	}
	if len(b.User) > 64 {
		return app.Credentials{}, app.Invalid(map[string]string{"user": "is too long"})
	}
	return app.Credentials{User: b.User, Port: b.Port, PrivateKey: []byte(b.PrivateKey), Password: b.Password}, nil
}

type jobJSON struct {
	ID         string        `json:"id"`
	VMID       string        `json:"vm_id"`
	State      string        `json:"state"`
	Steps      []app.JobStep `json:"steps"`
	Error      string        `json:"error,omitempty"`
	CreatedAt  time.Time     `json:"created_at"`
	FinishedAt *time.Time    `json:"finished_at"`
}

func toJobJSON(j *app.InstallJob) jobJSON {
	out := jobJSON{ID: j.ID, VMID: j.VMID, State: j.State, Steps: j.Steps, Error: j.Error, CreatedAt: j.CreatedAt}
	if !j.FinishedAt.IsZero() {
		out.FinishedAt = &j.FinishedAt
	}
	return out
}

func (s *Server) installs() (Installs, error) {
	if s.Installs == nil {
		return nil, app.Errorf(app.EUNAVAILABLE, "agent installs are not configured on this manager")
	}
	return s.Installs, nil
}

func (s *Server) apiStartInstall(c echo.Context) error {
	in, err := s.installs()
	if err != nil {
		return err
	}
	if v := s.elsewhere(c); v != nil {
		// Another node's VM: a one-click install (no body) is queued for its node; one with
		// credentials goes there now (they are never stored, so never queued).
		if c.Request().ContentLength != 0 {
			return s.proxyToNode(c, v, "/v1/node/vms/"+v.ID+"/agent/install")
		}
		cur, queued, err := s.VMs.Ask(c.Request().Context(), v.ID, app.ActionInstall, actor(c))
		if err != nil {
			return err
		}
		j := toJSON(cur)
		a := toActionJSON(queued)
		j.QueuedAction = &a
		return c.JSON(http.StatusAccepted, j)
	}
	var body installBody
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &body); err != nil {
			return err
		}
	}
	creds, err := body.creds()
	if err != nil {
		return err
	}
	job, err := in.Start(c.Request().Context(), c.Param("id"), creds, actor(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/vms/"+job.VMID+"/agent/install")
	return c.JSON(http.StatusAccepted, toJobJSON(job))
}

func (s *Server) apiInstallStatus(c echo.Context) error {
	in, err := s.installs()
	if err != nil {
		return err
	}
	job, err := in.Latest(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toJobJSON(job))
}
