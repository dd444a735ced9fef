package web

import (
	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/vm"
	"hearth/views/pages"
)

// newVMPage is GET /vms/new: the create form with sensible defaults.
func (s *Server) newVMPage(c echo.Context) error {
	f := pages.VMForm{Title: "New virtual machine", Action: "/vms", Submit: "Create VM", Cancel: "/vms",
		VCPUs: "1", MemoryMiB: "256", CSRF: csrfToken(c), New: true}
	s.provisionChoice(&f, true)
	return renderOK(c, s.vmFormPage(c, "New VM", f))
}

// createVM is POST /vms: create, then go to the VM; a refusal re-renders the form with
// every field's problem.
func (s *Server) createVM(c echo.Context) error {
	f, u, parseErrs := formSpec(c)
	f.Title, f.Action, f.Submit, f.Cancel, f.New = "New virtual machine", "/vms", "Create VM", "/vms", true
	provision := c.FormValue("provision") == "on"
	s.provisionChoice(&f, provision)
	spec := app.VMSpec{Provision: &provision}
	u.Apply(&spec)
	f.Node = c.FormValue("node")
	var created *app.VM
	var err error
	var target string
	if len(parseErrs) == 0 {
		want := f.Node
		if target, err = s.placement(c, &want, spec.MemoryMiB, spec.Image); err == nil && target != "" {
			// Another node makes it, as through the API.
			var id string
			if id, err = s.createOn(c, target, spec); err == nil {
				return redirect(c, "/vms/"+id)
			}
		} else if err == nil {
			created, _, err = s.VMs.Create(c.Request().Context(), spec, actor(c))
		}
	} else {
		err = vm.Normalize(&spec) // to show every field's problem at once
	}
	if len(parseErrs) > 0 || err != nil {
		status, _, _ := classify(err)
		if err == nil {
			status = 400
		} else if status >= 500 {
			return err
		}
		formErrors(&f, parseErrs, err)
		return render(c, status, s.vmFormPage(c, "New VM", f))
	}
	return redirect(c, "/vms/"+created.ID)
}
