package web

import (
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"hearth/app"
)

// guestIPBody is the seed document's contract: {"guest_ip": "192.168.1.100"}; null or ""
// clears. Guests may add "source": "agent" so the page can tell the agent's registration
// from cloud-init's first-boot callback.
type guestIPBody struct {
	GuestIP json.RawMessage `json:"guest_ip"`
	Source  string          `json:"source"`
}

// parse returns the raw address ("" to clear).
func (b guestIPBody) parse() (string, error) {
	if len(b.GuestIP) == 0 {
		return "", app.Errorf(app.EINVALID, `guest_ip is required (a string; null or "" clears it)`)
	}
	if string(b.GuestIP) == "null" {
		return "", nil
	}
	var ip string
	if err := json.Unmarshal(b.GuestIP, &ip); err != nil {
		return "", app.Errorf(app.EINVALID, `guest_ip must be a string or null`)
	}
	return ip, nil
}

// apiSetGuestIP serves POST /v1/vms/{id}/guest-ip for operators (source manual) and for
// the VM's own guest, authenticated by its registration token (source callback or agent).
func (s *Server) apiSetGuestIP(c echo.Context) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	by := actor(c)
	source := app.SourceManual
	if by.Kind == app.ActorGuest {
		token, _ := c.Get(keyGuestVM).(string)
		if err := s.VMs.AuthenticateGuest(ctx, id, token); err != nil {
			return err
		}
		by.Name = id
		source = app.SourceCallback
	}
	var body guestIPBody
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	switch {
	case body.Source == "":
	case by.Kind != app.ActorGuest:
		return app.Errorf(app.EINVALID, "source is only for guests; an operator's change is always manual")
	case body.Source == string(app.SourceCallback) || body.Source == string(app.SourceAgent):
		source = app.GuestIPSource(body.Source)
	default:
		return app.Errorf(app.EINVALID, `source must be "callback" or "agent"`)
	}
	raw, err := body.parse()
	if err != nil {
		return err
	}
	vm, err := s.VMs.SetGuestIP(ctx, id, raw, source, by)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toJSON(vm))
}
