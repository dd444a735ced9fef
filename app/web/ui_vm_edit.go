package web

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"hearth/app"
	"hearth/app/vm"
	"hearth/views/pages"
)

// editVMPage is GET /vms/{id}/edit: the form, filled in.
func (s *Server) editVMPage(c echo.Context) error {
	v, err := s.VMs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	f := pages.VMForm{Title: "Edit " + v.Name, Action: "/vms/" + v.ID, Submit: "Save changes", Cancel: "/vms/" + v.ID,
		Name: v.Name, Image: v.Image, VCPUs: strconv.Itoa(v.VCPUs), MemoryMiB: strconv.Itoa(v.MemoryMiB), Kernel: v.Kernel,
		Initrd: v.Initrd, Rootfs: v.Rootfs, BootArgs: v.BootArgs, CSRF: csrfToken(c)}
	return renderOK(c, s.vmFormPage(c, "Edit "+v.Name, f))
}

// updateVM is POST /vms/{id}: save, then back to the VM; a refusal re-renders the form.
func (s *Server) updateVM(c echo.Context) error {
	id := c.Param("id")
	f, u, parseErrs := formSpec(c)
	f.Title, f.Action, f.Submit, f.Cancel = "Edit "+f.Name, "/vms/"+id, "Save changes", "/vms/"+id
	var err error
	if v := s.elsewhere(c); v != nil && len(parseErrs) == 0 {
		// Another node's VM: its node changes it (its files, images and seal key are there).
		err = s.askOwner(c, v, http.MethodPatch, "/vms/"+id, vmSpecJSON{Hypervisor: u.Hypervisor, Name: u.Name, Image: u.Image,
			VCPUs: u.VCPUs, MemoryMiB: u.MemoryMiB, Kernel: u.Kernel, Initrd: u.Initrd, Rootfs: u.Rootfs, BootArgs: u.BootArgs})
	} else if len(parseErrs) == 0 {
		_, err = s.VMs.Update(c.Request().Context(), id, u, actor(c))
	} else {
		var spec app.VMSpec
		u.Apply(&spec)
		err = vm.Normalize(&spec)
	}
	if len(parseErrs) > 0 || err != nil {
		status, code, _ := classify(err)
		if err == nil {
			status = 400
		} else if status >= 500 || code == app.ENOTFOUND {
			return err
		}
		formErrors(&f, parseErrs, err)
		return render(c, status, s.vmFormPage(c, f.Title, f))
	}
	return redirect(c, "/vms/"+id)
}
