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
	var created *app.VM
	var err error
	if len(parseErrs) == 0 {
		created, _, err = s.VMs.Create(c.Request().Context(), spec, actor(c))
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
