package web

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/vm"
	"hearth/guest/api"
)

// apiSetGuestIP serves POST /v1/vms/{id}/guest-ip for operators (source manual) and for
// the VM's own guest, authenticated by its registration token (source callback or agent).
func (s *Server) apiSetGuestIP(c echo.Context) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	by := actor(c)
	source := app.SourceManual
	if by.Kind == app.ActorGuest {
		// Another VM's token is refused before its body is even read.
		if err := vm.SpeaksFor(by, id); err != nil {
			return err
		}
		source = app.SourceCallback
	}
	var body api.GuestIP // the seed document's contract, as the guest's side writes it
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	switch {
	case body.Source == "":
	case by.Kind != app.ActorGuest:
		return app.Errorf(app.EINVALID, "source is only for guests; an operator's change is always manual")
	case body.Source == api.SourceCallback || body.Source == api.SourceAgent:
		source = app.GuestIPSource(body.Source)
	default:
		return app.Errorf(app.EINVALID, `source must be "callback" or "agent"`)
	}
	raw, err := body.IP()
	if err != nil {
		return app.Errorf(app.EINVALID, "%s", err)
	}
	v, err := s.VMs.SetGuestIP(ctx, id, raw, source, by)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toJSON(v))
}
