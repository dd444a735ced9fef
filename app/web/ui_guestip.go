package web

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/views/pages"
)

func (s *Server) guestIPValue(c echo.Context) error {
	v, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return renderOK(c, pages.VMGuestIPValue(guestIPView(v, time.Now())))
}

// setGuestIP is the override form: set (action=set) or clear (action=clear) the guest IP
// by hand. With htmx it answers the re-rendered panel only; a plain form post goes back to
// the VM page. A bad address re-renders the panel with the error and changes nothing.
func (s *Server) setGuestIP(c echo.Context) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	input := strings.TrimSpace(c.FormValue("guest_ip"))
	raw := input
	switch c.FormValue("action") {
	case "clear":
		raw = ""
	case "set", "":
		if raw == "" {
			return s.guestIPPanel(c, id, http.StatusBadRequest, input, `Enter an address, or use Clear to remove it.`, "")
		}
	default:
		return app.Errorf(app.EINVALID, "action must be set or clear")
	}
	var v *app.VM
	var err error
	if remote := s.elsewhere(c); remote != nil {
		// Another node's VM: its node checks the address against its own networks.
		body := map[string]any{"guest_ip": nil}
		if raw != "" {
			body["guest_ip"] = raw
		}
		if err = s.askOwner(c, remote, http.MethodPost, "/vms/"+id+"/guest-ip", body); err == nil {
			v, err = s.VMs.Get(ctx, id)
		}
	} else {
		v, err = s.VMs.SetGuestIP(ctx, id, raw, app.SourceManual, actor(c))
	}
	if err != nil {
		status, msg, escalate := refusal(err)
		if escalate != nil {
			return escalate
		}
		return s.guestIPPanel(c, id, status, input, msg, "")
	}
	if !isHTMX(c) {
		return c.Redirect(http.StatusSeeOther, "/vms/"+id)
	}
	saved := "Guest IP set to " + v.GuestIP + "."
	if raw == "" {
		saved = "Guest IP cleared."
	}
	g := guestIPView(v, time.Now())
	g.Saved, g.CSRF = saved, csrfToken(c)
	c.Response().Header().Set("HX-Trigger", "vm-changed") // the activity list reloads itself
	return renderOK(c, pages.VMGuestIP(g))
}

func (s *Server) guestIPPanel(c echo.Context, id string, status int, input, msg, saved string) error {
	v, err := s.VMs.Get(c.Request().Context(), id)
	if err != nil {
		return err
	}
	g := guestIPView(v, time.Now())
	g.Input, g.Error, g.Saved, g.CSRF = input, msg, saved, csrfToken(c)
	if !isHTMX(c) {
		// Without htmx there is no panel to swap: show the whole page with the error.
		return s.renderVMPageWith(c, v, g, status, "")
	}
	// htmx swaps only 2xx responses unless told otherwise; HX-Reswap keeps the panel swap
	// so the error appears in the form.
	c.Response().Header().Set("HX-Reswap", "outerHTML")
	return render(c, status, pages.VMGuestIP(g))
}
